"""The testbed's one error: something it needs is missing or failed to start."""


class TestbedError(Exception):
    """A testbed step failed; the message says what is missing and how to get it."""

    __test__ = False  # not a pytest test class
