"""A terminal session started once its caller has said the terminal's size.

kubectl sends the size as the first message on the resize stream, just after the
streams are set up, which is after the backend was asked for the session. A command
already started on a default size must then be resized, and a chain of terminals
(ssh, ``srun --pty``, ``podman exec -t``) can lose a size that comes while a link still
starts. Started on the first size (or `DEFAULT` when none comes soon), every link
reads the right size as it starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from vkpy.aio import finish
from vkpy.remote import OutputStream, TerminalSize
from vkpy.transport.interactive import Session

DEFAULT = TerminalSize(80, 24)
FIRST_SIZE_SECONDS = 2.0  # kubectl sends it within milliseconds; other clients may never


class SizedSession:
    """A `Session` whose command starts (``start(size)``) on the first size given."""

    def __init__(
        self,
        start: Callable[[TerminalSize], Awaitable[Session]],
        *,
        wait: float = FIRST_SIZE_SECONDS,
    ) -> None:
        self._first: asyncio.Future[TerminalSize] = asyncio.get_running_loop().create_future()
        self._latest: TerminalSize | None = None
        self._closing: asyncio.Task[None] | None = None
        self._started: asyncio.Task[Session] = asyncio.ensure_future(self._start(start, wait))

    async def _start(
        self, start: Callable[[TerminalSize], Awaitable[Session]], wait: float
    ) -> Session:
        try:
            size = await asyncio.wait_for(asyncio.shield(self._first), wait)
        except TimeoutError:
            size = DEFAULT
        session = await start(size)
        if self._latest is not None and self._latest != size:  # resized while it started
            await session.resize(self._latest)
        return session

    def _running(self) -> Session | None:
        """The command, once started; None before, or when it never started."""
        started = self._started
        if not started.done() or started.cancelled() or started.exception() is not None:
            return None
        return started.result()

    async def _session(self) -> Session:
        return await asyncio.shield(self._started)

    async def output(self, stream: OutputStream) -> AsyncIterator[bytes]:
        session = await self._session()
        async for chunk in session.output(stream):
            yield chunk

    async def write(self, data: bytes) -> None:
        await (await self._session()).write(data)

    async def close_stdin(self) -> None:
        await (await self._session()).close_stdin()

    async def resize(self, size: TerminalSize) -> None:
        self._latest = size
        if not self._first.done():
            self._first.set_result(size)
        elif (running := self._running()) is not None:
            await running.resize(size)

    async def signal(self, name: str) -> None:
        await (await self._session()).signal(name)

    async def wait(self) -> int:
        return await (await self._session()).wait()

    async def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name="closing a sized session")
        await finish(self._closing)

    async def _close(self) -> None:
        # Still waiting for the size: nothing runs, and nothing will. Already starting:
        # the start goes on to its end (a channel half-opened would leak), then closes.
        if not self._first.done():
            self._first.cancel()
        await asyncio.wait({self._started})
        if (session := self._running()) is not None:
            await session.close()
