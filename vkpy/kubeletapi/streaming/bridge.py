"""One exec or attach session: the caller's streams joined to a backend `Process`.

The wire protocol (SPDY streams or WebSocket channels) hands the bridge what came in
(stdin bytes, terminal sizes) as async iterators and a `Wire` to send output and the
final status on. The session ends when the process has ended and its output is all
sent; then the status goes out. When the caller goes away the session task is
cancelled, and the process is closed either way, so nothing keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Generic, Protocol, TypeVar

from vkpy.errors import BackendError
from vkpy.jsontypes import JSON
from vkpy.kubeletapi.streaming.status import error_status, exit_status
from vkpy.remote import OutputStream, Process, TerminalSize

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Wire(Protocol):
    """Where a session's output goes."""

    async def send(self, stream: OutputStream, data: bytes) -> None: ...

    async def end(self, stream: OutputStream) -> None:
        """No more output on ``stream``."""

    async def report(self, status: JSON) -> None:
        """The session's outcome, on the error stream."""


class Activity:
    """When bytes last moved either way: what the idle time-out watches."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self.last


class Inbox(Generic[T]):
    """Bytes or sizes pushed by a wire reader, read by the bridge as an async iterator.
    ``end`` marks the end (stdin EOF). The queue is short, so a reader waits while the
    process has not taken what came before: nothing is buffered without bound."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=8)
        self._ended = False

    async def put(self, item: T) -> None:
        if not self._ended:
            await self._queue.put(item)

    async def end(self) -> None:
        if not self._ended:
            self._ended = True
            await self._queue.put(_END)

    async def items(self) -> AsyncIterator[T]:
        while (item := await self._queue.get()) is not _END:
            yield item  # type: ignore[misc]  # anything but _END is a T


_END = object()


async def _pump_output(
    process: Process, stream: OutputStream, wire: Wire, activity: Activity
) -> None:
    async for chunk in process.output(stream):
        if chunk:
            activity.touch()
            await wire.send(stream, chunk)
    await wire.end(stream)


async def _feed_stdin(process: Process, stdin: AsyncIterator[bytes], activity: Activity) -> None:
    async for data in stdin:
        activity.touch()
        await process.write(data)
    await process.close_stdin()


async def _follow_resizes(process: Process, sizes: AsyncIterator[TerminalSize]) -> None:
    async for size in sizes:
        await process.resize(size)


async def run_session(
    process: Process,
    wire: Wire,
    *,
    outputs: Iterable[OutputStream],
    command: tuple[str, ...] = (),
    stdin: AsyncIterator[bytes] | None = None,
    sizes: AsyncIterator[TerminalSize] | None = None,
    activity: Activity | None = None,
) -> int | None:
    """Run the session to its end and report it; the exit code, or None when the
    backend failed (reported as an internal error). Closes ``process``."""
    activity = activity or Activity()
    inputs: list[asyncio.Task[None]] = []
    try:
        if stdin is not None:
            inputs.append(asyncio.ensure_future(_feed_stdin(process, stdin, activity)))
        if sizes is not None:
            inputs.append(asyncio.ensure_future(_follow_resizes(process, sizes)))
        await asyncio.gather(*(_pump_output(process, s, wire, activity) for s in outputs))
        code = await process.wait()
    except BackendError as exc:
        logger.info("a streaming session failed: %s", exc)
        await wire.report(error_status(str(exc)))
        return None
    finally:
        for task in inputs:
            task.cancel()
        await asyncio.gather(*inputs, return_exceptions=True)
        await process.close()
    await wire.report(exit_status(code, command))
    return code


async def idle_watch(activity: Activity, timeout: float) -> None:
    """Returns once nothing moved for ``timeout`` seconds (0: never)."""
    if timeout <= 0:
        await asyncio.Event().wait()
    while True:
        idle = activity.idle_for()
        if idle >= timeout:
            return
        await asyncio.sleep(min(timeout - idle, 5.0) + 0.01)


async def first_done(*tasks: asyncio.Future[Any]) -> None:
    """Wait for any of ``tasks``, then cancel and reap the rest."""
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
