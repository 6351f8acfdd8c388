"""`Session`: a `vkpy.remote.Process` over Podman streams (exec or attach).

One pump task reads the output (a hijacked connection, `from_connection`, or a
followed log) and hands each stream's bytes to a bounded queue per stream, so a slow
reader of stdout holds back the connection (and so the process) instead of filling
memory. Without a terminal Podman sends frames (stream 1 stdout, 2 stderr); with one
the bytes come raw and are all "stdout". What differs between exec and attach
(resize, exit code, what to kill) is a `Control`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from vkpy.aio import finish
from vkpy.backends.podman.api import STDERR, STDOUT, FrameDecoder
from vkpy.errors import BackendError
from vkpy.remote import OutputStream, TerminalSize

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
QUEUE_CHUNKS = 16
STREAMS: dict[int, OutputStream] = {STDOUT: "stdout", STDERR: "stderr"}


class Control(Protocol):
    async def resize(self, size: TerminalSize) -> None: ...

    async def exit_code(self) -> int:
        """Once the connection ended: how the process (or container) ended."""
        ...

    async def close(self, *, ended: bool) -> None:
        """Kill what still runs (``ended`` False) and release what Podman keeps."""


def asked(*, stdout: bool, stderr: bool, tty: bool) -> list[OutputStream]:
    """The streams a caller reads: with a terminal, stderr is part of stdout."""
    found: list[OutputStream] = ["stdout"] if stdout else []
    if stderr and not tty:
        found.append("stderr")
    return found


def route(frames: Iterable[tuple[int, bytes]]) -> list[tuple[OutputStream, bytes]]:
    """Frames to (stream, bytes), dropping stdin echoes and empty payloads."""
    return [(STREAMS[number], data) for number, data in frames if number in STREAMS and data]


async def from_connection(
    reader: asyncio.StreamReader, *, tty: bool, name: str
) -> AsyncIterator[tuple[OutputStream, bytes]]:
    """What a hijacked connection brings: raw with a terminal, else frames."""
    decoder = FrameDecoder()
    try:
        while data := await reader.read(READ_SIZE):
            if tty:
                yield "stdout", data
                continue
            for routed in route(decoder.feed(data)):
                yield routed
    except OSError as exc:  # the connection broke: the output ends here
        logger.debug("%s: the connection ended: %s", name, exc)
    if decoder.pending:
        logger.debug("%s ended inside a frame (%d bytes)", name, decoder.pending)


class Session:
    """Output from ``source``; stdin to ``writer`` (None: a session without stdin)."""

    def __init__(
        self,
        source: AsyncIterator[tuple[OutputStream, bytes]],
        writer: asyncio.StreamWriter | None,
        control: Control,
        *,
        tty: bool,
        streams: Iterable[OutputStream],
        name: str,
    ) -> None:
        self._writer = writer
        self._control = control
        self._tty = tty
        self._name = name
        self._queues: dict[OutputStream, asyncio.Queue[bytes | None]] = {
            stream: asyncio.Queue(QUEUE_CHUNKS) for stream in streams
        }
        self._pump = asyncio.create_task(self._run(source), name=f"output of {name}")
        self._closing: asyncio.Task[None] | None = None

    async def _run(self, source: AsyncIterator[tuple[OutputStream, bytes]]) -> None:
        try:
            async for stream, data in source:
                queue = self._queues.get(stream)
                if queue is not None:
                    await queue.put(data)
        except BackendError as exc:
            logger.warning("%s: the output ended early: %s", self._name, exc)
        for queue in self._queues.values():  # after what the readers have not taken yet
            await queue.put(None)

    async def output(self, stream: OutputStream) -> AsyncIterator[bytes]:
        queue = self._queues.get(stream)
        if queue is None:
            return
        while (data := await queue.get()) is not None:
            yield data

    async def write(self, data: bytes) -> None:
        if self._writer is None:
            raise BackendError(f"{self._name}: no stdin was asked for")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise BackendError(f"{self._name}: stdin is closed: {exc}") from exc

    async def close_stdin(self) -> None:
        if self._writer is None:
            return
        if self._writer.can_write_eof() and not self._writer.is_closing():
            with contextlib.suppress(OSError):
                self._writer.write_eof()

    async def resize(self, size: TerminalSize) -> None:
        if self._tty:
            await self._control.resize(size)

    async def wait(self) -> int:
        await asyncio.shield(self._pump)
        return await self._control.exit_code()

    async def close(self) -> None:
        # A task of its own, waited for to its end: the kubelet API's handler is
        # cancelled when its connection drops, often while it closes the session, and
        # a kill cut short there would leave the command running for good.
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name=f"closing {self._name}")
        await finish(self._closing)

    async def _close(self) -> None:
        ended = self._pump.done()
        try:
            await self._control.close(ended=ended)
        finally:
            if self._writer is not None:
                self._writer.close()
                with contextlib.suppress(OSError):
                    await self._writer.wait_closed()
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            for queue in self._queues.values():  # readers still waiting see the end
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
