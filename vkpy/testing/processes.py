"""Background processes of the testbed, tracked by PID file so `down` stops exactly them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from vkpy.testing.errors import TestbedError
from vkpy.testing.waiting import WaitTimeout, eventually_sync


class Supervisor:
    """Starts detached daemons, records their PIDs under ``state/pids``, stops them by PID."""

    def __init__(self, state: Path) -> None:
        self.pids = state / "pids"
        self.logs = state / "logs"

    def pid(self, name: str) -> int | None:
        """The PID of a running daemon we started, or None."""
        try:
            pid = int((self.pids / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start ``argv`` detached unless it runs already; its output goes to logs/NAME.log."""
        running = self.pid(name)
        if running is not None:
            return running
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # survives the make/pytest process that started it
            )
        (self.pids / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def stop(self, name: str, *, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; a no-op when it is not running."""
        pid = self.pid(name)
        if pid is not None:
            _terminate(pid, timeout)
        with contextlib.suppress(FileNotFoundError):
            (self.pids / f"{name}.pid").unlink()

    def names(self) -> list[str]:
        if not self.pids.exists():
            return []
        return sorted(p.stem for p in self.pids.glob("*.pid"))

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(
        self, name: str, ready: Callable[[], bool], *, what: str, timeout: float = 60.0
    ) -> None:
        """Poll ``ready`` until true; fail with the daemon's log tail if it died or timed out."""

        def alive_and_ready() -> bool:
            if ready():
                return True
            if self.pid(name) is None:
                raise TestbedError(f"{name} exited before {what}:\n{self.log_tail(name)}")
            return False

        try:
            eventually_sync(alive_and_ready, what=f"{name}: {what}", timeout=timeout)
        except WaitTimeout as timed_out:
            raise TestbedError(f"{timed_out}\n{self.log_tail(name)}") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.05)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def https_ok(url: str, *, ca: Path, cert: Path, key: Path) -> bool:
    """True when a GET on ``url`` answers 200 with the given client certificate."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False
