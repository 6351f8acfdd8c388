"""What installing vkpy brings into other people's environments."""

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_testbed_plugin_is_not_registered_for_every_pytest_session() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "pytest11" not in project["project"].get("entry-points", {})
    assert not [e for e in entry_points(group="pytest11") if e.value.startswith("vkpy")]


def test_vkpys_own_suite_opts_into_the_testbed_plugin() -> None:
    namespace: dict[str, object] = {}
    exec((ROOT / "tests" / "conftest.py").read_text(), namespace)  # noqa: S102
    assert namespace["pytest_plugins"] == ["vkpy.testing.fixtures"]
