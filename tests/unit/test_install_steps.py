"""The fresh-machine set-up: one package list, reached from `make demo` and `make test`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-system-deps.sh"
PACKAGES = ROOT / "scripts" / "system-packages.txt"


def listed() -> list[str]:
    words = []
    for line in PACKAGES.read_text().splitlines():
        words += line.split("#", 1)[0].split()
    return words


@pytest.mark.parametrize("target", ["demo", "test", "integration", "testbed-up", "bench"])
def test_make_targets_that_need_the_testbed_install_the_system_packages(target):
    planned = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=True
    ).stdout
    assert "bash scripts/install-system-deps.sh" in planned.splitlines()


def test_the_list_names_what_podman_only_recommends():
    packages = listed()
    assert {"podman", "uidmap", "catatonit"} <= set(packages)
    assert len(packages) == len(set(packages))


def fake_commands(tmp_path: Path, *, installed: set[str], uid: int) -> dict[str, str]:
    """dpkg-query, id and apt-get stand-ins: which packages are there, who runs it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    present = " ".join(sorted(installed))
    (bin_dir / "dpkg-query").write_text(
        f'#!/bin/sh\nfor p in {present}; do [ "$p" = "$3" ] && '
        "printf 'install ok installed' && exit 0; done\nexit 1\n"
    )
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt-get.log\n')
    for program in bin_dir.iterdir():
        program.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_nothing_is_installed_when_every_package_is_present(tmp_path):
    env = fake_commands(tmp_path, installed=set(listed()), uid=0)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "system packages: all present"
    assert not (tmp_path / "apt-get.log").exists()


def test_root_installs_what_is_missing_without_recommends(tmp_path):
    env = fake_commands(tmp_path, installed=set(listed()) - {"uidmap", "catatonit"}, uid=0)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "apt-get.log").read_text().splitlines()
    assert calls[-1].split()[-2:] == ["uidmap", "catatonit"]
    assert "--no-install-recommends" in calls[-1].split()


def test_a_user_is_told_the_one_line_to_run(tmp_path):
    env = fake_commands(tmp_path, installed=set(listed()) - {"catatonit"}, uid=1000)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "apt-get install -y --no-install-recommends catatonit" in done.stderr
    assert not (tmp_path / "apt-get.log").exists()
