"""The login user's rootless Podman, for Slurm jobs that run containers with it.

Rootless Podman on these machines needs what the testbed's root Podman has, in the
user's own places: the containers.conf settings (in ``~/.config/containers/``, read
by rootless Podman without ``CONTAINERS_CONF``), sub-UID and sub-GID ranges, and the
busybox image in the user's own storage (root's images are not visible to it). Jobs
get the same environment as an SSH session of the user (no XDG_RUNTIME_DIR: Podman
keeps its runtime state in /tmp/podman-run-<uid>), so the image is imported with that
environment too.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from vkpy.testing import podman
from vkpy.testing.errors import TestbedError
from vkpy.testing.sshd import LOGIN_USER

SUBID_START = 100000
SUBID_COUNT = 65536


def _has_range(path: Path, user: str) -> bool:
    try:
        return any(line.split(":")[0] == user for line in path.read_text().splitlines())
    except FileNotFoundError:
        return False


def ensure_subids(user: str, start: int = SUBID_START) -> None:
    """Sub-UID/GID ranges for ``user`` (useradd adds them; older accounts may lack them),
    ``SUBID_COUNT`` ids from ``start``."""
    for path, flag in (
        (Path("/etc/subuid"), "--add-subuids"),
        (Path("/etc/subgid"), "--add-subgids"),
    ):
        if not _has_range(path, user):
            last = start + SUBID_COUNT - 1
            subprocess.run(["usermod", flag, f"{start}-{last}", user], check=True)


def user_environment(account: pwd.struct_passwd) -> dict[str, str]:
    """What an SSH session (and so a Slurm job) of the user has; no XDG_RUNTIME_DIR."""
    return {
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "SHELL": account.pw_shell,
    }


def _as_user(
    account: pwd.struct_passwd, argv: list[str], *, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            "runuser",
            "-u",
            account.pw_name,
            "--",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in user_environment(account).items()),
            *argv,
        ],
        input=stdin,
        capture_output=True,
        cwd=account.pw_dir,
    )


def write_user_containers_conf(account: pwd.struct_passwd) -> Path:
    directory = Path(account.pw_dir) / ".config" / "containers"
    for path in (directory.parent, directory):
        path.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(path, account.pw_uid, account.pw_gid)
    conf = directory / "containers.conf"
    if not conf.exists() or conf.read_text() != podman.CONTAINERS_CONF:
        conf.write_text(podman.CONTAINERS_CONF)
    conf.chmod(0o644)
    shutil.chown(conf, account.pw_uid, account.pw_gid)
    return conf


def ensure_user_image(account: pwd.struct_passwd, image: str = podman.IMAGE) -> None:
    if _as_user(account, ["podman", "image", "exists", image]).returncode == 0:
        return
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise TestbedError("busybox is missing: apt-get install -y busybox-static")
    with tempfile.TemporaryDirectory(prefix="vkpy-rootfs-") as tmp:
        podman.busybox_rootfs(Path(tmp), Path(busybox))
        tar = subprocess.run(["tar", "-C", tmp, "-c", "."], capture_output=True, check=True)
    imported = _as_user(
        account,
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
        stdin=tar.stdout,
    )
    if imported.returncode != 0:
        raise TestbedError(
            f"podman import as {account.pw_name} failed: {imported.stderr.decode(errors='replace')}"
        )


def prepare_login_user(user: str = LOGIN_USER, *, image: str = podman.IMAGE) -> None:
    """Make ``user``'s rootless Podman run ``image`` with --network=host|none; idempotent."""
    if shutil.which("podman") is None or shutil.which("runuser") is None:
        raise TestbedError("podman and runuser are needed: apt-get install -y podman util-linux")
    try:
        account = pwd.getpwnam(user)
    except KeyError as exc:
        raise TestbedError(f"no user {user}: start the testbed first") from exc
    ensure_subids(user)
    write_user_containers_conf(account)
    ensure_user_image(account, image)
