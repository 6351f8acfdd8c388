"""One SPDY stream: an ordered, two-way byte channel with half-close and reset.

Received DATA waits in the stream until `SpdyStream.read` takes it. The buffer is
bounded: a peer that ignores our windows (spdystream does) makes the connection's
reader wait for the application, which slows the peer through the transport, as the Go
side does it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vkpy.errors import StreamProtocolError
from vkpy.kubeletapi.spdy import frames
from vkpy.kubeletapi.spdy.flow import Credit, SendWindows
from vkpy.kubeletapi.spdy.headers import Headers
from vkpy.kubeletapi.spdy.outbox import Outbox

BUFFER_LIMIT = 1 << 20
"""Bytes a stream holds unread before the connection stops reading for it."""
IN_FLIGHT = 4
"""DATA frames of one write queued at a time: enough to keep the transport busy."""


@dataclass(frozen=True)
class Link:
    """What a stream needs of its connection."""

    outbox: Outbox
    windows: SendWindows
    max_frame: int
    consumed: Callable[[int], None]  # bytes read by the application (session credit)
    finished: Callable[[SpdyStream], None]  # both halves closed: forget the stream


class SpdyStream:
    """``headers`` are the peer's (for a stream we opened, ours): lowercase names,
    several values joined by NUL. ``reset_status`` tells a reset from a clean end."""

    def __init__(
        self,
        link: Link,
        stream_id: int,
        headers: Headers,
        *,
        local_closed: bool = False,
        remote_closed: bool = False,
    ) -> None:
        self.id = stream_id
        self.headers = headers
        self.reply_headers: Headers = {}
        self.reset_status: int | None = None
        self.send_window = link.windows.stream_initial
        self._link = link
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._credit = Credit()
        self._local_closed = local_closed
        self._remote_closed = remote_closed
        self._lost: StreamProtocolError | None = None
        self.replied: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<SpdyStream {self.id} {self.headers}>"

    @property
    def done(self) -> bool:
        return self._local_closed and self._remote_closed

    async def read(self) -> bytes:
        """The next bytes the peer sent; b"" once it finished or the stream was reset."""
        while not self._chunks:
            if self._remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered < BUFFER_LIMIT:
            self._room.set()
        self._link.consumed(len(chunk))
        delta = self._credit.consumed(len(chunk))
        if delta and not self._remote_closed:
            self._link.outbox.send(frames.encode(frames.WindowUpdate(self.id, delta)))
        return chunk

    async def write(self, data: bytes) -> None:
        """Send ``data`` as DATA frames of at most the connection's frame size; returns
        once the transport took them. Raises StreamProtocolError when the stream was
        closed, reset or its connection ended."""
        view = memoryview(data)
        queued: deque[asyncio.Future[None]] = deque()
        try:
            while view:
                size = await self._link.windows.take(self, min(len(view), self._link.max_frame))
                head = frames.data_head(self.id, size)
                queued.append(self._link.outbox.send_data(head, view[:size]))
                view = view[size:]
                if len(queued) >= IN_FLIGHT:
                    await queued.popleft()
            while queued:
                await queued.popleft()
        finally:
            for future in queued:
                future.cancel()

    async def close(self) -> None:
        """Our half-close (FIN): the peer reads the end; reading here goes on."""
        if self._local_closed:
            return
        self._local_closed = True
        done = self._link.outbox.send_data(frames.data_head(self.id, 0, fin=True))
        with contextlib.suppress(StreamProtocolError):
            await done
        self._finish_if_done()

    def reset(self, status: int = frames.RstStatus.CANCEL) -> None:
        """Abandon the stream both ways (RST_STREAM); unread data is dropped."""
        if self.done:
            return
        self._link.outbox.send(frames.encode(frames.RstStream(self.id, status)))
        self._end(StreamProtocolError(f"SPDY stream {self.id} was reset here"))

    def check_writable(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self._local_closed:
            raise StreamProtocolError(f"SPDY stream {self.id} is closed for writing")

    # What the connection calls as frames come.

    def received(self, data: bytes, *, fin: bool) -> bool:
        """Take a DATA frame's payload; False when it was dropped (the stream had
        ended), so the connection gives its bytes back to the session window."""
        if self._remote_closed:
            return not data
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered >= BUFFER_LIMIT:
                self._room.clear()
        if fin:
            self._remote_closed = True
            self._finish_if_done()
        self._readable.set()
        return True

    async def room(self) -> None:
        """Wait until the application read enough of what is buffered."""
        await self._room.wait()

    def peer_reset(self, status: int) -> None:
        self.reset_status = status
        self._end(StreamProtocolError(f"SPDY stream {self.id} was reset by the peer ({status})"))

    def connection_lost(self, error: StreamProtocolError) -> None:
        """The connection ended: writes fail; what came can still be read."""
        self._lost = self._lost or error
        self._local_closed = self._remote_closed = True
        self._wake(self._lost)

    def _end(self, error: StreamProtocolError) -> None:
        self._lost = self._lost or error
        self._local_closed = self._remote_closed = True
        self._link.consumed(self._buffered)  # dropped unread: the session gets it back
        self._chunks.clear()
        self._buffered = 0
        self._wake(self._lost)
        self._link.finished(self)

    def _wake(self, error: StreamProtocolError) -> None:
        self._readable.set()
        self._room.set()
        if not self.replied.done():
            self.replied.set_exception(error)
            self.replied.exception()
        self._link.windows.wake()

    def _finish_if_done(self) -> None:
        if self.done:
            self._link.finished(self)
