"""A second login node in its own network namespace, joined to the host by a veth pair,
so a test can cut the network between the agent and the login node.

Its sshd runs inside the namespace on LOGIN_ADDRESS, with the testbed's host key, login
user and client key. Slurm commands run there reach slurmctld, which listens on every
address, at HOST_ADDRESS through a copy of slurm.conf; the jobs themselves run under the
host's slurmd, so a cut leaves them running, as on a real cluster. `cut` drops the login
side of the link: the agent's packets then vanish without an answer, as when a route to
a login node goes away, rather than being refused.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from vkpy.testing.errors import TestbedError
from vkpy.testing.processes import Supervisor, port_open
from vkpy.testing.sshd import LOGIN_USER, Ssh, sshd_config

NAMESPACE = "vkpy-login"
HOST_SIDE, LOGIN_SIDE = "vkpy-login-h", "vkpy-login-l"  # interface names: 15 bytes at most
HOST_ADDRESS, LOGIN_ADDRESS = "10.213.0.1", "10.213.0.2"
DAEMON = "sshd-netns"


def _ip(*args: str, inside: bool = False) -> None:
    prefix = ["ip", "netns", "exec", NAMESPACE] if inside else []
    done = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise TestbedError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _exists() -> bool:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return any(line.split()[0] == NAMESPACE for line in listed.splitlines() if line.strip())


def _network() -> None:
    if _exists():
        return
    _ip("netns", "add", NAMESPACE)
    _ip("link", "add", HOST_SIDE, "type", "veth", "peer", "name", LOGIN_SIDE)
    _ip("link", "set", LOGIN_SIDE, "netns", NAMESPACE)
    _ip("addr", "add", f"{HOST_ADDRESS}/30", "dev", HOST_SIDE)
    _ip("link", "set", HOST_SIDE, "up")
    _ip("addr", "add", f"{LOGIN_ADDRESS}/30", "dev", LOGIN_SIDE, inside=True)
    _ip("link", "set", LOGIN_SIDE, "up", inside=True)
    _ip("link", "set", "lo", "up", inside=True)


def login_slurm_conf(text: str) -> str:
    """``text`` (the testbed's slurm.conf) with slurmctld reached at HOST_ADDRESS."""
    return re.sub(r"^(SlurmctldHost=[^(\s]+)\([^)]*\)", rf"\1({HOST_ADDRESS})", text, flags=re.M)


def up(
    state: Path, supervisor: Supervisor, *, port: int, slurm_conf: Path, extra_path: Path
) -> Ssh:
    """The namespace, its link and its sshd (reusing ``state/ssh``'s keys, which the
    testbed's sshd made); idempotent."""
    keys = state.resolve() / "ssh"
    if not (keys / "id_ed25519").exists() or shutil.which("ip") is None:
        raise TestbedError("the login namespace needs the testbed up and iproute2")
    _network()
    conf = slurm_conf.with_name("netns-slurm.conf")  # where the login user can read it
    conf.write_text(login_slurm_conf(slurm_conf.read_text()))
    conf.chmod(0o644)
    host_public = (keys / "ssh_host_ed25519_key.pub").read_text().split()
    known_hosts = keys / "netns-known_hosts"
    known_hosts.write_text(f"[{LOGIN_ADDRESS}]:{port} {host_public[0]} {host_public[1]}\n")
    config = keys / "netns-sshd_config"
    text = sshd_config(
        port=port,
        host_key=keys / "ssh_host_ed25519_key",
        pid_file=keys / "netns-sshd.pid",
        user=LOGIN_USER,
        slurm_conf=conf,
        extra_path=extra_path,
    )
    config.write_text(text.replace("ListenAddress 127.0.0.1", f"ListenAddress {LOGIN_ADDRESS}"))
    start(supervisor, config, port)
    return Ssh(
        host=LOGIN_ADDRESS,
        port=port,
        user=LOGIN_USER,
        client_key=keys / "id_ed25519",
        known_hosts=known_hosts,
    )


def start(supervisor: Supervisor, config: Path, port: int) -> None:
    """Start the namespace's sshd (a no-op when it runs) and wait for its port."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    argv = ["ip", "netns", "exec", NAMESPACE, sshd, "-D", "-e", "-f", str(config)]
    supervisor.start(DAEMON, argv)  # `ip netns exec` execs sshd: the PID stays sshd's
    supervisor.wait_until(DAEMON, lambda: port_open(port, LOGIN_ADDRESS), what="port")


def cut() -> None:
    """Drop the login side of the link: packets to and from the login node are lost."""
    _ip("link", "set", LOGIN_SIDE, "down", inside=True)


def mend() -> None:
    _ip("link", "set", LOGIN_SIDE, "up", inside=True)


def down(supervisor: Supervisor) -> None:
    """Stop the namespace's sshd and remove the namespace with its link; idempotent."""
    supervisor.stop(DAEMON)
    if _exists():
        subprocess.run(["ip", "link", "del", HOST_SIDE], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)
