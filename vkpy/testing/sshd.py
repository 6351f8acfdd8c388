"""A real sshd on 127.0.0.1 with an unprivileged login user, as a cluster's login node.

The host key is recorded in a known_hosts file so clients verify it; the login user
authenticates with a key pair whose private half stays in the testbed state (0600).
"""

from __future__ import annotations

import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vkpy.testing.errors import TestbedError
from vkpy.testing.processes import Supervisor, port_open

LOGIN_USER = "vkpyuser"


@dataclass(frozen=True)
class Ssh:
    host: str
    port: int
    user: str
    client_key: Path
    known_hosts: Path


def sshd_config(
    *, port: int, host_key: Path, pid_file: Path, user: str, slurm_conf: Path, extra_path: Path
) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {pid_file}",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"AllowUsers {user}",
            "UsePAM no",
            "MaxSessions 100",
            "MaxStartups 100:30:200",
            "ClientAliveInterval 30",
            "Subsystem sftp internal-sftp",
            f"SetEnv SLURM_CONF={slurm_conf} PATH={extra_path}:/usr/local/bin:/usr/bin:/bin",
            "",
        ]
    )


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
        # An unlocked account without a password: key authentication only.
        subprocess.run(["usermod", "-p", "*", name], check=True)
        return pwd.getpwnam(name)


def remove_user(name: str) -> None:
    """Remove ``name`` and its home, ending its processes first (rootless Podman's)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    subprocess.run(["pkill", "-KILL", "-u", name], check=False)
    subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def _keygen(path: Path) -> None:
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vkpy-testbed", "-f", str(path)],
            check=True,
        )


def _install_authorized_key(user: pwd.struct_passwd, public_key: str) -> None:
    ssh_dir = Path(user.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(public_key)
    for path, mode in ((ssh_dir, 0o700), (keys, 0o600)):
        path.chmod(mode)
        shutil.chown(path, user.pw_uid, user.pw_gid)


def up(
    state: Path, supervisor: Supervisor, *, port: int, slurm_conf: Path, extra_path: Path
) -> Ssh:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists() or shutil.which("ssh-keygen") is None:
        raise TestbedError("sshd is missing: apt-get install -y openssh-server")
    user = ensure_user(LOGIN_USER)
    keys = state / "ssh"
    keys.mkdir(parents=True, exist_ok=True)
    keys.chmod(0o700)
    host_key, client_key = keys / "ssh_host_ed25519_key", keys / "id_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    _install_authorized_key(user, client_key.with_suffix(".pub").read_text())
    known_hosts = keys / "known_hosts"
    host_public = host_key.with_suffix(".pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    config = keys / "sshd_config"
    config.write_text(
        sshd_config(
            port=port,
            host_key=host_key,
            pid_file=keys / "sshd.pid",
            user=LOGIN_USER,
            slurm_conf=slurm_conf,
            extra_path=extra_path,
        )
    )
    start(supervisor, config, port)
    return Ssh(
        host="127.0.0.1", port=port, user=LOGIN_USER, client_key=client_key, known_hosts=known_hosts
    )


def start(supervisor: Supervisor, config: Path, port: int) -> None:
    """Start sshd with ``config`` (a no-op when it runs) and wait for its port. Tests stop
    it, and the sessions it serves, then call this to restart it."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    supervisor.start("sshd", [sshd, "-D", "-e", "-f", str(config)])
    supervisor.wait_until("sshd", lambda: port_open(port), what="port")


def down(supervisor: Supervisor) -> None:
    supervisor.stop("sshd")  # `Testbed.down` stops sshd-pods with the rest


def serve_pods(state: Path, supervisor: Supervisor, *, address: str, port: int) -> str:
    """The login node's sshd on ``address`` too (the worker node's, which pods reach),
    as a second sshd of the same config, so the tests that stop ``sshd`` leave it be.
    Return the known_hosts line that names it there. ``up`` must have run."""
    keys = state / "ssh"
    config = (keys / "sshd_config").read_text()
    config = config.replace("ListenAddress 127.0.0.1", f"ListenAddress {address}")
    config = config.replace(f"PidFile {keys / 'sshd.pid'}", f"PidFile {keys / 'sshd-pods.pid'}")
    path = keys / "sshd_config_pods"
    path.write_text(config)
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    supervisor.start("sshd-pods", [sshd, "-D", "-e", "-f", str(path)])
    supervisor.wait_until("sshd-pods", lambda: port_open(port, address), what="port")
    kind, key = (keys / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"[{address}]:{port} {kind} {key}\n"


def client_ports(port: int, pid: int) -> list[int]:
    """The local ports of process ``pid``'s established connections to sshd on ``port``."""
    out = _ss(f"( dport = :{port} )")
    return sorted(int(line.split()[2].rsplit(":", 1)[1]) for line in out if f"pid={pid}," in line)


def session_pids(port: int, clients: list[int]) -> list[int]:
    """The sshd processes serving the connections from local ports ``clients`` (not the
    listener): killing them cuts those connections as a restart of sshd would."""
    pids: set[int] = set()
    for local in clients:
        for line in _ss(f"( sport = :{port} and dport = :{local} )"):
            pids.update(int(p) for p in re.findall(r"pid=(\d+)", line))
    return sorted(pids)


def _ss(selector: str) -> list[str]:
    argv = ["ss", "-Htnp", "state", "established", selector]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
