"""The package's public surface is its flat ``__init__``: every name listed, none missing."""

import inspect

import vkpy.kubeletapi as package


def test_all_lists_exactly_the_public_names():
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(package.__all__) == public
