"""What a command runner is: the `Runner` protocol and the values that cross it.

A runner runs an argv (never a shell string) and answers with a `Completed`: exit
status, stdout and stderr as bytes. A non-zero exit status is an answer, not an error;
only a runner that cannot run the command at all raises, with `BackendUnavailable`.
"""

from __future__ import annotations

import shlex
import signal
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vkpy.errors import BackendError

STDERR_IN_MESSAGES = 500  # characters of stderr an error message quotes


def command_line(argv: Sequence[str]) -> str:
    """The POSIX shell command line that runs exactly ``argv``: every element quoted.

    This is the only way argv becomes shell text (an SSH exec request is one); whatever
    an element holds, the remote shell sees it as one literal word.
    """
    if not argv:
        raise ValueError("an empty argv runs nothing")
    if any("\0" in word for word in argv):
        raise ValueError("an argv element holds a NUL byte")
    return " ".join(shlex.quote(word) for word in argv)


def signal_status(name: str) -> int:
    """128 + the signal's number, as a shell reports a command killed by it."""
    try:
        return 128 + int(signal.Signals[f"SIG{name.removeprefix('SIG')}"])
    except KeyError:
        return 255


@dataclass(frozen=True)
class Completed:
    """A command that ran: its exit status (128+N when killed by signal N) and output."""

    argv: tuple[str, ...]
    status: int
    stdout: bytes = field(repr=False)
    stderr: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    def describe(self) -> str:
        """``sbatch exited 1: <stderr>``, for error messages."""
        stderr = self.stderr.decode("utf-8", errors="replace").strip()
        if len(stderr) > STDERR_IN_MESSAGES:
            stderr = "..." + stderr[-STDERR_IN_MESSAGES:]
        return f"{self.argv[0]} exited {self.status}" + (f": {stderr}" if stderr else "")

    def check(self) -> Completed:
        """Self when the command succeeded; else `CommandFailed`."""
        if not self.ok:
            raise CommandFailed(self)
        return self


class CommandFailed(BackendError):
    """A command ran and exited non-zero where success was required."""

    def __init__(self, completed: Completed) -> None:
        super().__init__(completed.describe())
        self.completed = completed


@runtime_checkable
class Stream(Protocol):
    """A running command whose stdout is read as it comes (``tail -f``)."""

    def chunks(self) -> AsyncIterator[bytes]:
        """Stdout as it arrives; ends when the command ends."""
        ...


@runtime_checkable
class Runner(Protocol):
    """Runs commands where the batch system is: locally, or on a login node over SSH.

    Implementations count what they do in ``calls`` (by program name, plus ``put``,
    ``get``, ``mkdir`` and ``stream``) and the connections they opened in
    ``connections_opened``. Every method raises `BackendUnavailable` when the target
    cannot be reached.
    """

    target: str  # "local", or ssh://user@host:port: for messages
    calls: Counter[str]
    connections_opened: int

    async def connect(self) -> None:
        """Reach the target now (a no-op when connected); raises BackendUnavailable."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> Completed:
        """Run ``argv`` to its end. ``idempotent`` commands are run again, once, on a new
        connection when the connection broke under them; others never are, because they
        may have run already."""

    async def mkdir(self, path: str, *, mode: int) -> None:
        """Make directory ``path`` (and missing parents) with exactly ``mode``."""

    async def put(self, path: str, data: bytes, *, mode: int) -> None:
        """Write ``data`` to ``path`` (replacing it), its mode exactly ``mode`` from the
        start, so a secret is never readable by others even for a moment."""

    async def get(self, path: str) -> bytes | None:
        """The content of ``path``, or None when there is no such file."""

    def stream(self, argv: Sequence[str]) -> AbstractAsyncContextManager[Stream]:
        """Start ``argv`` and read its stdout as it comes; leaving the context stops it."""
        ...

    async def close(self) -> None:
        """Close connections; a later call reconnects."""
