"""The testbed's fixtures, opted into here rather than registered for every user of vkpy."""

pytest_plugins = ["vkpy.testing.fixtures"]


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    """The soak last: its faults restart the testbed's daemons under the other tests."""
    items.sort(key=lambda item: item.get_closest_marker("soak") is not None)
