"""The Podman host of the in-cluster agent: what examples/deploy/podman asks an admin to
set up on the node the agent's pod runs on, done on the testbed's worker node.

- The user ``vkpy`` with the agent image's uid 10001, so the agent's pod, running as
  that uid, may use the user's rootless Podman socket and nothing of root's.
- Its sub-UID/GID ranges after the login user's, so the two never share a uid.
- Its rootless Podman REST service at ``/run/user/10001/podman/podman.sock``, with
  ``XDG_RUNTIME_DIR`` set as a login session would (systemd's ``podman.socket`` where
  systemd runs; it does not here), and the testbed's containers.conf settings.
- ``/var/lib/vkpy-podman``, where the backend stages pod files for Podman to mount.
- The busybox test image in the user's own storage: root's images are not visible to it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vkpy.testing import podman, rootless
from vkpy.testing.errors import TestbedError
from vkpy.testing.processes import Supervisor

USER = "vkpy"
UID = 10001
STAGING = Path("/var/lib/vkpy-podman")
SERVICE = "agenthost-podman"
# After the login user's range (rootless.SUBID_START, SUBID_COUNT long).
SUBID_START = rootless.SUBID_START + rootless.SUBID_COUNT


@dataclass(frozen=True)
class AgentHost:
    user: str
    uid: int
    runtime_dir: Path
    staging: Path

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "podman" / "podman.sock"


def _account() -> pwd.struct_passwd:
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--uid", str(UID), "--user-group", "--create-home", USER], check=True
        )
        account = pwd.getpwnam(USER)
    if account.pw_uid != UID:
        raise TestbedError(f"user {USER} exists with uid {account.pw_uid}, not the image's {UID}")
    return account


def _private_dir(path: Path, account: pwd.struct_passwd) -> None:
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(0o700)


def _environment(account: pwd.struct_passwd, runtime_dir: Path) -> dict[str, str]:
    return {**rootless.user_environment(account), "XDG_RUNTIME_DIR": str(runtime_dir)}


def _as_user_argv(account: pwd.struct_passwd, runtime_dir: Path, argv: list[str]) -> list[str]:
    env = (f"{k}={v}" for k, v in _environment(account, runtime_dir).items())
    return ["runuser", "-u", account.pw_name, "--", "env", "-i", *env, *argv]


def _ensure_image(
    account: pwd.struct_passwd, runtime_dir: Path, podman_env: dict[str, str]
) -> None:
    exists = _as_user_argv(account, runtime_dir, ["podman", "image", "exists", podman.IMAGE])
    if subprocess.run(exists, capture_output=True, cwd=account.pw_dir).returncode == 0:
        return
    saved = subprocess.run(
        ["podman", "save", "--format", "docker-archive", podman.IMAGE],
        capture_output=True,
        env=podman_env,
    )
    if saved.returncode != 0:
        raise TestbedError(f"podman save {podman.IMAGE} failed: {saved.stderr.decode()}")
    loaded = subprocess.run(
        _as_user_argv(account, runtime_dir, ["podman", "load"]),
        input=saved.stdout,
        capture_output=True,
        cwd=account.pw_dir,
    )
    if loaded.returncode != 0:
        raise TestbedError(f"podman load as {USER} failed: {loaded.stderr.decode()}")


def up(supervisor: Supervisor, *, podman_env: dict[str, str]) -> AgentHost:
    """Prepare the user, its directories, image and Podman service; idempotent."""
    account = _account()
    rootless.ensure_subids(USER, start=SUBID_START)
    rootless.write_user_containers_conf(account)
    host = AgentHost(USER, UID, Path(f"/run/user/{UID}"), STAGING)
    Path("/run/user").mkdir(mode=0o755, exist_ok=True)
    _private_dir(host.runtime_dir, account)
    _private_dir(host.socket.parent, account)
    _private_dir(host.staging, account)
    _ensure_image(account, host.runtime_dir, podman_env)
    if supervisor.pid(SERVICE) is None:
        host.socket.unlink(missing_ok=True)
    supervisor.start(
        SERVICE,
        _as_user_argv(
            account,
            host.runtime_dir,
            ["podman", "system", "service", "--time=0", f"unix://{host.socket}"],
        ),
        cwd=Path(account.pw_dir),
    )
    supervisor.wait_until(SERVICE, host.socket.exists, what="API socket")
    return host


def down(supervisor: Supervisor) -> None:
    supervisor.stop(SERVICE)
    # The user's containers outlive the service (conmon); the next agent adopts or
    # removes them, but a stopped testbed should leave none running.
    with_user = os.path.exists(f"/run/user/{UID}")
    if with_user and shutil.which("runuser"):
        try:
            account = pwd.getpwnam(USER)
        except KeyError:
            return
        subprocess.run(
            _as_user_argv(account, Path(f"/run/user/{UID}"), ["podman", "rm", "-af", "-t", "0"]),
            capture_output=True,
            cwd=account.pw_dir,
        )
        subprocess.run(
            _as_user_argv(account, Path(f"/run/user/{UID}"), ["podman", "pod", "rm", "-af"]),
            capture_output=True,
            cwd=account.pw_dir,
        )
