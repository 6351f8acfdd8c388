"""The testbed's fixtures, opted into here rather than registered for every user of vkpy."""

pytest_plugins = ["vkpy.testing.fixtures"]
