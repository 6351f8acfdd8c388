"""The one writer of a SPDY connection's transport.

Control frames (replies, resets, pings, window updates) are queued without waiting, so
the connection's reader never blocks on the transport: two peers that both write more
than the other reads would otherwise deadlock, each reader stuck sending a PING reply.
DATA frames wait until they are written, which is how a slow transport slows down the
writers of the streams. Control frames go first; each turn writes what is queued as
one transport write. Frames carrying header blocks are queued already compressed: the
queue keeps their order, so the compression state follows the wire.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from vkpy.errors import StreamProtocolError
from vkpy.kubeletapi.spdy.transport import ByteWriter

logger = logging.getLogger(__name__)
BATCH = 256 * 1024
"""About the most bytes of DATA one transport write takes."""


class Outbox:
    def __init__(self, writer: ByteWriter, *, on_write: Callable[[], None]) -> None:
        self._writer = writer
        self._on_write = on_write
        self._control: deque[bytes] = deque()
        self._control_size = 0
        self._data: deque[tuple[bytes, bytes | memoryview, asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._in_flight: list[asyncio.Future[None]] = []
        self._failure: StreamProtocolError | None = None

    @property
    def control_backlog(self) -> int:
        """Bytes of control frames not written yet."""
        return self._control_size

    def send(self, frame: bytes) -> None:
        """Queue a control frame; dropped once the transport failed."""
        if self._failure is None:
            self._control.append(frame)
            self._control_size += len(frame)
            self._room.clear()
            self._wake.set()

    def send_data(self, head: bytes, payload: bytes | memoryview = b"") -> asyncio.Future[None]:
        """Queue a frame behind the DATA queued before it; the future is done once the
        frame is written, and fails with StreamProtocolError if it never will be."""
        done = asyncio.get_running_loop().create_future()
        if self._failure is not None:
            done.set_exception(self._failure)
            done.exception()  # seen here: a caller that gave up waiting logs nothing
        else:
            self._data.append((head, payload, done))
            self._wake.set()
        return done

    async def written(self) -> None:
        """Wait until every control frame queued so far is written (or the transport
        failed)."""
        await self._room.wait()

    async def run(self) -> None:
        """Write until cancelled or the transport fails (then raise StreamProtocolError)."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._control or self._data:
                    await self._write_turn()
        except StreamProtocolError as exc:
            self.fail(exc)
            raise

    async def _write_turn(self) -> None:
        parts: list[bytes | memoryview] = [*self._control]
        self._control.clear()
        self._control_size = 0
        size = 0
        while self._data and size < BATCH:
            head, payload, future = self._data.popleft()
            parts += (head, payload)
            size += len(head) + len(payload)
            self._in_flight.append(future)
        try:
            await self._writer.write(b"".join(parts))
        except (OSError, EOFError, RuntimeError) as exc:
            raise StreamProtocolError(f"SPDY connection lost while writing: {exc}") from exc
        finally:
            if not self._control:
                self._room.set()
        self._on_write()
        for future in self._in_flight:
            if not future.done():
                future.set_result(None)
        self._in_flight.clear()

    def fail(self, error: StreamProtocolError) -> None:
        """Fail everything queued and everything queued later with ``error``."""
        if self._failure is None:
            self._failure = error
        self._control.clear()
        self._control_size = 0
        self._room.set()
        waiting = [*self._in_flight, *(item[2] for item in self._data)]
        self._in_flight.clear()
        self._data.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(self._failure)
                future.exception()
