"""Driving kubectl exec, attach, cp and port-forward as a user does, for the streaming
tests: plain subprocesses, a pty for ``-it``, and the port kubectl forwards from."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

from tests.integration.helpers import REPO


def kubectl_env(kubeconfig: Path) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(kubeconfig)}


def run_kubectl(
    kubeconfig: Path, *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["kubectl", *args],
        env=kubectl_env(kubeconfig),
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=REPO,
    )


def set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class Terminal:
    """A command on a real pseudo-terminal, as in a user's shell window."""

    def __init__(self, argv: list[str], env: dict[str, str], *, rows: int, columns: int) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: its terminal has the size before kubectl starts
            set_size(0, rows, columns)
            os.execvpe(argv[0], argv, env)  # noqa: S606 (kubectl, as a user runs it)
        self.pid, self.fd = pid, fd
        self.seen = b""
        self.ended = False

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_exc: object) -> None:
        """A test that failed midway leaves no session behind for the next one."""
        if not self.ended:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            os.close(self.fd)
            self.ended = True

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern.encode())
        while (found := regex.search(self.seen)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {pattern!r} on the terminal; it showed {self.seen[-500:]!r}"
                )
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"terminal closed; it showed {self.seen[-500:]!r}")
                self.seen += chunk
        self.seen = self.seen[found.end() :]
        return found

    def resize(self, rows: int, columns: int) -> None:
        """As a window resize does: the kernel signals SIGWINCH to kubectl."""
        set_size(self.fd, rows, columns)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # drain, so the child never blocks writing
                os.read(self.fd, 4096)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                self.ended = True
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("kubectl did not end")


class PortForward:
    """`kubectl port-forward` to ``port`` of a pod, on a free local port."""

    def __init__(self, kubeconfig: Path, target: str, port: int, *extra: str) -> None:
        self.process = subprocess.Popen(
            ["kubectl", "port-forward", *extra, target, f":{port}"],
            env=kubectl_env(kubeconfig),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
        if found is None:
            self.close()
            raise AssertionError(f"kubectl port-forward said {line!r} {self.errors()!r}")
        self.local_port = int(found.group(1))

    def errors(self) -> str:
        if self.process.poll() is None:
            return ""
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
