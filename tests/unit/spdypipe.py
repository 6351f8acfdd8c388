"""An in-memory byte pipe with backpressure, and SPDY connections over a pair of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from vkpy.kubeletapi.spdy import SpdyConnection, SpdyStream
from vkpy.kubeletapi.spdy.frames import Frame, FrameParser, SynStream, encode
from vkpy.kubeletapi.spdy.headers import HeaderCompressor, HeaderDecompressor

F = TypeVar("F")


class Pipe:
    """One direction: ``write`` waits while more than ``capacity`` bytes are unread."""

    def __init__(self, capacity: int = 256 * 1024) -> None:
        self._buffer = bytearray()
        self._capacity = capacity
        self._closed = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.written = 0

    async def read(self, n: int) -> bytes:
        while not self._buffer and not self._closed:
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        if len(self._buffer) <= self._capacity:
            self._writable.set()
        return data

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("pipe closed")
        self._buffer += data
        self.written += len(data)
        self._readable.set()
        while len(self._buffer) > self._capacity and not self._closed:
            self._writable.clear()
            await self._writable.wait()

    async def close(self) -> None:
        self._closed = True
        self._readable.set()
        self._writable.set()


class End:
    """One end of a two-way pipe: reads one pipe, writes (and closes) the other."""

    def __init__(self, incoming: Pipe, outgoing: Pipe) -> None:
        self.incoming = incoming
        self.outgoing = outgoing

    async def read(self, n: int) -> bytes:
        return await self.incoming.read(n)

    async def write(self, data: bytes) -> None:
        await self.outgoing.write(data)

    async def close(self) -> None:
        await self.outgoing.close()


def ends(capacity: int = 256 * 1024) -> tuple[End, End]:
    up, down = Pipe(capacity), Pipe(capacity)
    return End(down, up), End(up, down)


@asynccontextmanager
async def connected(**options: Any) -> AsyncIterator[tuple[SpdyConnection, SpdyConnection]]:
    """A started client and server over an in-memory pipe; both closed afterwards."""
    client_end, server_end = ends()
    client = SpdyConnection(client_end, client_end, server=False, **options)
    server = SpdyConnection(server_end, server_end, server=True, **options)
    async with client, server:
        yield client, server


class RawPeer:
    """The far end of a pipe, speaking frames by hand: for what a well-behaved peer of
    our own would never send, and to see exactly what goes on the wire. ``near`` is the
    connection's end of the pipe."""

    def __init__(self, end: End, near: End) -> None:
        self.end = end
        self.near = near
        self.parser = FrameParser()
        self.deflate = HeaderCompressor()
        self.inflate = HeaderDecompressor()
        self._frames: list[Frame] = []

    async def send(self, *items: Frame | bytes) -> None:
        await self.end.write(b"".join(i if isinstance(i, bytes) else encode(i) for i in items))

    def block(self, headers: dict[str, str]) -> bytes:
        return self.deflate.compress(headers)

    async def next(self, timeout: float = 5.0) -> Frame | None:
        """The next frame; None at the end of the connection."""
        async with asyncio.timeout(timeout):
            while not self._frames:
                data = await self.end.read(65536)
                if not data:
                    return None
                self._frames += self.parser.feed(data)
        return self._frames.pop(0)

    async def next_of(self, kind: type[F], timeout: float = 5.0) -> F:
        """The next frame of ``kind``, skipping others (window updates, mostly)."""
        while True:
            frame = await self.next(timeout)
            assert frame is not None, f"the connection ended before a {kind.__name__}"
            if isinstance(frame, kind):
                return frame

    async def open(self, connection: SpdyConnection, stream_id: int = 1) -> SpdyStream:
        """Open a stream with no headers; the connection's side of it, as accepted."""
        await self.send(SynStream(stream_id, self.block({})))
        stream = await connection.accept()
        assert stream is not None
        return stream


@asynccontextmanager
async def raw(
    *, server: bool = True, capacity: int = 256 * 1024, **options: Any
) -> AsyncIterator[tuple[SpdyConnection, RawPeer]]:
    """A started connection facing a `RawPeer`."""
    near, far = ends(capacity)
    async with SpdyConnection(near, near, server=server, **options) as connection:
        yield connection, RawPeer(far, near)
