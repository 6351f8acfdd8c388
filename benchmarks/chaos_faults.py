"""The faults `make chaos` injects, each logged with its start and end.

A testbed daemon is restarted exactly as it was started: its argv, environment and
working directory are read from /proc before it is stopped, then the testbed's
supervisor starts it again under the same name. Agents are the driver's own processes.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from vkpy.testing import loginns
from vkpy.testing.processes import Supervisor


@dataclass
class Fault:
    kind: str
    target: str
    began: float
    ended: float = 0.0
    recovered: float = 0.0  # every node Ready again


@dataclass
class AgentProcess:
    """One `vkpy run`, restartable; its output appended to ``log``."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    rss_after_warmup: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, number)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def rss_mib(self) -> float:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0.0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def _launch(pid: int) -> tuple[list[str], dict[str, str], Path]:
    proc = Path(f"/proc/{pid}")
    argv = [word.decode() for word in proc.joinpath("cmdline").read_bytes().split(b"\0") if word]
    pairs = (item.split(b"=", 1) for item in proc.joinpath("environ").read_bytes().split(b"\0"))
    env = {key.decode(): value.decode() for key, *rest in pairs if rest for value in rest}
    return argv, env, proc.joinpath("cwd").resolve()


async def restart_daemon(supervisor: Supervisor, name: str, down_seconds: float) -> None:
    pid = supervisor.pid(name)
    if pid is None:
        raise RuntimeError(f"chaos: testbed daemon {name} is not running")
    argv, env, cwd = _launch(pid)
    await asyncio.to_thread(supervisor.stop, name)
    await asyncio.sleep(down_seconds)
    supervisor.start(name, argv, env=env, cwd=cwd)


@dataclass(frozen=True)
class SshDaemon:
    """An sshd of the testbed: its supervisor name and how to start it again."""

    name: str
    start: Callable[[], None]


async def kill_sshd(supervisor: Supervisor, daemon: SshDaemon, down_seconds: float) -> None:
    """kill -9 of sshd's listener and of every session it forked, then a new listener
    (sshd rewrites its process title, so it is started from its config, not /proc)."""
    pid = supervisor.pid(daemon.name)
    if pid is None:
        raise RuntimeError(f"chaos: {daemon.name} is not running")
    subprocess.run(["pkill", "-9", "-P", str(pid)], check=False)
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(down_seconds)
    await asyncio.to_thread(daemon.start)


async def cut_login_network(seconds: float) -> None:
    """The link to the login node's network namespace dropped for ``seconds``."""
    loginns.cut()
    try:
        await asyncio.sleep(seconds)
    finally:
        loginns.mend()


async def read_only(directory: Path, seconds: float) -> None:
    """``directory`` mounted read-only over itself for ``seconds`` (root ignores modes)."""
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(directory)], check=True, capture_output=True
        )
        await asyncio.sleep(seconds)
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


Injector = Callable[[random.Random], Awaitable[str]]


def injectors(
    supervisor: Supervisor,
    agents: list[AgentProcess],
    state_dirs: list[Path],
    sshds: list[SshDaemon],
) -> dict[str, Injector]:
    """Every fault kind: a coroutine that injects it and returns its target."""

    async def agent_kill9(rng: random.Random) -> str:
        agent = rng.choice(agents)
        agent.kill9()
        await asyncio.sleep(rng.uniform(0, 10))
        agent.start()
        return agent.name

    async def agent_sigstop(rng: random.Random) -> str:
        agent = rng.choice(agents)
        agent.signal(signal.SIGSTOP)
        await asyncio.sleep(60)
        agent.signal(signal.SIGCONT)
        return agent.name

    def daemon(name: str) -> Injector:
        async def inject(rng: random.Random) -> str:
            await restart_daemon(supervisor, name, rng.uniform(1, 5))
            return name

        return inject

    async def sshd_kill9(rng: random.Random) -> str:
        daemon = rng.choice(sshds)
        await kill_sshd(supervisor, daemon, rng.uniform(1, 5))
        return daemon.name

    async def network_cut(rng: random.Random) -> str:
        await cut_login_network(rng.uniform(20, 60))
        return loginns.LOGIN_ADDRESS

    async def state_read_only(rng: random.Random) -> str:
        index = rng.randrange(len(state_dirs))
        await read_only(state_dirs[index], 30)
        return agents[index].name

    return {
        "agent-kill-9": agent_kill9,
        "agent-sigstop-60s": agent_sigstop,
        "kube-apiserver-restart": daemon("kube-apiserver"),
        "etcd-restart": daemon("etcd"),
        "slurmctld-restart": daemon("slurmctld"),
        "podman-service-restart": daemon("podman-service"),
        "sshd-kill-9": sshd_kill9,
        "login-network-cut": network_cut,
        "state-dir-read-only-30s": state_read_only,
    }


def fault_kinds() -> list[str]:
    """The kinds `injectors` offers (CHAOS_FAULTS is checked against them)."""
    return sorted(injectors(Supervisor(Path("/nonexistent")), [], [], []))
