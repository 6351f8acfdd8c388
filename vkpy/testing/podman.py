"""Podman prepared for these machines, a local busybox image, and the REST API socket.

Two settings are needed here and go in a containers.conf pointed to by
``CONTAINERS_CONF`` (no edits in /etc): root cannot raise the hard limits podman asks
for by default, and crun refuses the hybrid cgroup layout, so runc with cgroupfs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vkpy.testing.errors import TestbedError
from vkpy.testing.processes import Supervisor

IMAGE = "localhost/busybox:latest"

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@dataclass(frozen=True)
class Podman:
    containers_conf: Path
    socket: Path
    image: str = IMAGE

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


def write_containers_conf(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "containers.conf"
    path.write_text(CONTAINERS_CONF)
    path.chmod(0o644)
    return path


def _run(argv: list[str], env: Mapping[str, str], stdin: bytes | None = None) -> str:
    proc = subprocess.run(argv, env=dict(env), input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise TestbedError(f"`{' '.join(argv)}` failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


def busybox_rootfs(root: Path, busybox: Path) -> None:
    """A minimal root filesystem: busybox, one symlink per applet, passwd and group."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    for directory in ("etc", "tmp", "proc", "sys", "dev", "root", "home"):
        (root / directory).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")


def ensure_image(env: Mapping[str, str], image: str = IMAGE) -> None:
    if subprocess.run(["podman", "image", "exists", image], env=dict(env)).returncode == 0:
        return
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise TestbedError("busybox is missing: apt-get install -y busybox-static")
    with tempfile.TemporaryDirectory(prefix="vkpy-rootfs-") as tmp:
        busybox_rootfs(Path(tmp), Path(busybox))
        tar = subprocess.run(["tar", "-C", tmp, "-c", "."], capture_output=True, check=True)
        _run(
            [
                "podman",
                "import",
                "--change",
                'CMD ["/bin/sh"]',
                "--change",
                "ENV PATH=/bin",
                "-",
                image,
            ],
            env,
            stdin=tar.stdout,
        )


def up(state: Path, supervisor: Supervisor) -> Podman:
    for tool, package in (("podman", "podman"), ("runc", "runc")):
        if shutil.which(tool) is None:
            raise TestbedError(f"{tool} is missing: apt-get install -y {package}")
    conf = write_containers_conf(state / "podman")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    ensure_image(env)
    socket = state / "podman" / "podman.sock"
    if supervisor.pid("podman-service") is None:
        socket.unlink(missing_ok=True)
    # Its own working directory: conmon leaves marker files (an `oom` file after a
    # memory kill) in the service's working directory.
    supervisor.start(
        "podman-service",
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=env,
        cwd=socket.parent,
    )
    supervisor.wait_until("podman-service", socket.exists, what="API socket")
    return Podman(containers_conf=conf, socket=socket)


def down(supervisor: Supervisor) -> None:
    supervisor.stop("podman-service")
