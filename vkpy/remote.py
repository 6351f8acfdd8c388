"""Reaching into a running pod: what the kubelet API asks of a backend for exec, attach
and port-forward.

These are optional capabilities, like `vkpy.backend.LogReader`: the agent checks them
with ``isinstance`` and the kubelet API answers a clear error for a backend without one.
The protocols say nothing of SPDY or WebSocket; the kubelet API speaks those and moves
bytes between the caller and a `Process` or a `Tunnel`.

A `Process` is one command run in a container (exec) or the container's own stdio
(attach). Its output is read with `Process.output` until it ends; ``wait`` gives the
exit code. ``close`` must leave nothing running in the backend: the kubelet API calls
it when the caller goes away, when a time-out fires and at the end of every session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

OutputStream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


@dataclass(frozen=True)
class StreamRequest:
    """What the caller asked for: the kubelet's exec and attach query.

    With ``tty`` the process gets a terminal: its stdout and stderr are one stream,
    read as "stdout", and ``stderr`` is False.
    """

    uid: str
    container: str
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False
    command: tuple[str, ...] = ()  # exec only; attach joins the container's own stdio


class Process(Protocol):
    """One running exec or attach session."""

    def output(self, stream: OutputStream) -> AsyncIterator[bytes]:
        """The bytes of ``stream`` as they come; ends when the process closes it.
        Called at most once per stream, and only for the streams asked for."""
        ...

    async def write(self, data: bytes) -> None:
        """Bytes for the process's stdin (asked for with ``stdin``)."""

    async def close_stdin(self) -> None:
        """End of stdin: the process reads EOF."""

    async def resize(self, size: TerminalSize) -> None:
        """The caller's terminal changed size (only with ``tty``)."""

    async def wait(self) -> int:
        """The exit code once the process ended (for attach, the container's).
        Raises BackendError when it cannot be known."""
        ...

    async def close(self) -> None:
        """Kill what still runs and release everything; safe to call again. Runs to
        its end even when its caller is cancelled meanwhile (`vkpy.aio.finish`), and a
        second call waits for the first."""


class Tunnel(Protocol):
    """One TCP connection to a port of the pod."""

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes; b"" once the pod's side closed."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data``, waiting while the connection's buffers are full."""

    async def write_eof(self) -> None:
        """The caller will send nothing more (half-close)."""

    async def close(self) -> None:
        """Close the connection; safe to call again."""


@runtime_checkable
class Executor(Protocol):
    """A backend that runs commands in a pod's containers (``kubectl exec``, ``kubectl cp``)."""

    async def exec(self, request: StreamRequest) -> Process:
        """Start ``request.command`` in the container. Raises PodNotFound (no such pod or
        container), ContainerNotRunning, StreamingUnsupported (the backend cannot do it
        for this pod, with the reason) or BackendUnavailable."""
        ...


@runtime_checkable
class Attacher(Protocol):
    """A backend that joins the stdio of a running container (``kubectl attach``)."""

    async def attach(self, request: StreamRequest) -> Process:
        """Join the container's stdio; raises as `Executor.exec` does."""
        ...


@runtime_checkable
class PortForwarder(Protocol):
    """A backend that opens TCP connections to a pod's ports (``kubectl port-forward``)."""

    async def forward(self, uid: str, port: int) -> Tunnel:
        """Connect to ``port`` of the pod. Raises PodNotFound, StreamingUnsupported,
        BackendUnavailable, or PortUnreachable when nothing answers on the port."""
        ...


class StreamTunnel:
    """A `Tunnel` over an asyncio stream pair: what most backends hand back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, limit: int) -> bytes:
        return await self._reader.read(limit)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def write_eof(self) -> None:
        if self._writer.can_write_eof() and not self._writer.is_closing():
            self._writer.write_eof()

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
