"""`make image`: the agent image built from Debian's archive and vkpy's wheel, with no
registry, is the image the Containerfile describes, and it runs."""

import json
import os
import subprocess

import pytest

from vkpy.testing import agentimage


@pytest.fixture(scope="module")
def image(testbed):
    return agentimage.build()


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=dict(os.environ))


def test_the_image_is_configured_as_the_containerfile_says(image):
    declared = agentimage.parse_containerfile((agentimage.REPO / "Containerfile").read_text())
    inspected = podman("image", "inspect", image.reference)
    assert inspected.returncode == 0, inspected.stderr
    config = json.loads(inspected.stdout)[0]["Config"]
    assert config["User"] == declared.user
    assert config["WorkingDir"] == declared.workdir
    assert tuple(config["Entrypoint"]) == declared.entrypoint
    assert tuple(config["Cmd"]) == declared.cmd
    assert set(config["ExposedPorts"]) == {f"{p}/tcp" for p in declared.ports}
    assert config["Labels"] == declared.labels


def test_the_image_runs_the_agent_as_its_user_on_a_read_only_root(image, tmp_path):
    version = podman("run", "--rm", "--read-only", image.reference, "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"vkpy {agentimage.project_version()} ")
    whoami = podman("run", "--rm", "--read-only", "--entrypoint", "id", image.reference, "-u")
    assert whoami.stdout.strip() == "10001"
    # check-config refuses the base config's placeholder backend, naming the field.
    config = tmp_path / "config.yaml"
    config.write_text("node: {name: x}\nbackend: {kind: nothing}\n")
    config.chmod(0o644)
    checked = podman(
        "run",
        "--rm",
        "--read-only",
        "-v",
        f"{config}:/etc/vkpy/config.yaml:ro",
        image.reference,
        "check-config",
        "/etc/vkpy/config.yaml",
    )
    assert checked.returncode != 0
    assert "backend" in checked.stdout + checked.stderr


def test_the_archive_carries_the_name_a_kubelet_resolves(image):
    listed = subprocess.run(
        ["tar", "-xOf", str(image.archive), "manifest.json"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    tags = {tag for entry in json.loads(listed.stdout) for tag in entry["RepoTags"] or []}
    assert image.containerd_reference in tags
