"""Interactive commands and TCP connections through a runner: what exec, attach and
port-forward need from the transport.

`Interactive` is an optional capability of a `Runner` (`SshRunner` and `LocalRunner`
have it): ``start`` runs an argv with its stdin, stdout and stderr as streams, or on a
terminal of a given size, and ``open_tcp`` opens a TCP connection from the runner's
host (over SSH: a direct-tcpip channel, so the port need not be reachable from the
agent). A `Session` is the running command; it has what `vkpy.remote.Process` asks for,
plus ``signal``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from vkpy.remote import OutputStream, TerminalSize, Tunnel


class Session(Protocol):
    """A command started with `Interactive.start`."""

    def output(self, stream: OutputStream) -> AsyncIterator[bytes]:
        """The stream's bytes as they come (with a terminal, all output is "stdout")."""
        ...

    async def write(self, data: bytes) -> None:
        """Bytes for its stdin, waiting while the buffers are full."""

    async def close_stdin(self) -> None:
        """End of stdin (on a terminal: the end-of-file character)."""

    async def resize(self, size: TerminalSize) -> None:
        """The terminal's new size; nothing without a terminal."""

    async def signal(self, name: str) -> None:
        """Send signal ``name`` ("TERM", "KILL") to the command."""

    async def wait(self) -> int:
        """Its exit status (128+N when killed by signal N)."""
        ...

    async def close(self) -> None:
        """Kill the command if it still runs and release its channel; idempotent."""


@runtime_checkable
class Interactive(Protocol):
    """A runner that can run interactive commands and open TCP connections."""

    async def start(
        self,
        argv: Sequence[str],
        *,
        stdin: bool,
        stdout: bool = True,
        stderr: bool = True,
        terminal: TerminalSize | None = None,
    ) -> Session:
        """Start ``argv``; streams not asked for are /dev/null. With ``terminal`` the
        command runs on a pseudo-terminal of that size (its stderr is the terminal)."""
        ...

    async def open_tcp(self, host: str, port: int) -> Tunnel:
        """A TCP connection to ``host:port`` from the runner's host; raises
        PortUnreachable when refused, BackendUnavailable when the runner is unreachable."""
        ...


def eof_byte() -> bytes:
    """What a terminal in canonical mode reads as end of file (^D)."""
    return b"\x04"
