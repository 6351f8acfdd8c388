from pathlib import Path

import pytest

from vkpy.testing import agentimage
from vkpy.testing.agentimage import ImageConfig, parse_containerfile
from vkpy.testing.errors import TestbedError

REPO = Path(__file__).resolve().parents[2]

SAMPLE = """\
# a build stage first
FROM docker.io/library/python:3.11-slim AS build
USER 0
EXPOSE 9999

FROM docker.io/library/python:3.11-slim
LABEL a="one two" \\
      b=three
USER 10001:10001
WORKDIR /home/app
EXPOSE 80 443
ENTRYPOINT ["app"]
CMD serve --port 80
"""


def test_only_the_last_stage_counts():
    config = parse_containerfile(SAMPLE)
    assert config == ImageConfig(
        user="10001:10001",
        workdir="/home/app",
        entrypoint=("app",),
        cmd=("/bin/sh", "-c", "serve --port 80"),
        ports=("80", "443"),
        labels={"a": "one two", "b": "three"},
    )


def test_the_projects_containerfile_declares_the_agents_user_entrypoint_and_ports():
    config = parse_containerfile((REPO / "Containerfile").read_text())
    assert config.user == "10001:10001"
    assert config.entrypoint == ("vkpy",)
    assert config.cmd == ("run", "--config", "/etc/vkpy/config.yaml")
    assert set(config.ports) == {"10250", "10248"}
    assert config.labels["org.opencontainers.image.version"] == agentimage.project_version()


def test_the_changes_repeat_every_setting_for_podman_import():
    changes = parse_containerfile(SAMPLE).changes()
    assert changes[:4] == [
        "USER 10001:10001",
        "WORKDIR /home/app",
        'ENTRYPOINT ["app"]',
        'CMD ["/bin/sh", "-c", "serve --port 80"]',
    ]
    assert {"EXPOSE 80", "EXPOSE 443", 'LABEL a="one two"', 'LABEL b="three"'} <= set(changes)
    assert changes[-1].startswith(f"ENV PATH={agentimage.VENV}/bin:")


def test_a_file_without_from_is_refused():
    with pytest.raises(TestbedError, match="no FROM"):
        parse_containerfile("USER 1\n")


def test_the_base_key_changes_with_what_goes_in():
    assert agentimage.base_key() == agentimage.base_key("bookworm", ("python3-venv", "python3"))
    assert agentimage.base_key() != agentimage.base_key("bookworm", ("python3",))
    assert agentimage.base_key("trixie") != agentimage.base_key()


def test_the_source_key_changes_with_the_sources(tmp_path):
    (tmp_path / "vkpy").mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nversion = '1'\n")
    (tmp_path / "Containerfile").write_text("FROM x\n")
    (tmp_path / "vkpy" / "a.py").write_text("x = 1\n")
    first = agentimage.source_key(tmp_path)
    (tmp_path / "vkpy" / "a.py").write_text("x = 2\n")
    assert agentimage.source_key(tmp_path) != first
