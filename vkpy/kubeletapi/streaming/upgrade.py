"""Taking over an HTTP connection for SPDY/3.1, inside aiohttp.

aiohttp switches protocols only for ``Upgrade: websocket`` (and ``tcp``); for
``Upgrade: SPDY/3.1`` it would go on parsing HTTP. The client sends nothing before
it has our 101, so the handler can, like aiohttp's own WebSocket response, install a
payload parser that hands every later byte to a stream (`RawFeed`), answer 101, and
then write raw bytes through the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import hdrs, web

READ_BUFFER = 256 * 1024
SPDY = "SPDY/3.1"
PROTOCOL_VERSION = "X-Stream-Protocol-Version"


def is_spdy_upgrade(request: web.BaseRequest) -> bool:
    connection = {t.strip().lower() for t in request.headers.get(hdrs.CONNECTION, "").split(",")}
    return "upgrade" in connection and request.headers.get(hdrs.UPGRADE, "").lower() == "spdy/3.1"


def negotiate_version(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The kubelet's handshake: the first version the client offers that we serve
    ("" when the client offers none: the oldest protocol), None when none is served."""
    wanted = [v.strip() for value in offered for v in value.split(",") if v.strip()]
    if not wanted:
        return ""
    return next((v for v in wanted if v in supported), None)


class RawFeed:
    """The payload parser aiohttp feeds once the connection is ours, and the reader of
    what it was fed. It pauses the transport itself while its buffer is full: aiohttp's
    own pausing goes through its HTTP parser, which no longer parses this connection."""

    def __init__(self, transport: asyncio.BaseTransport | None, limit: int = READ_BUFFER) -> None:
        self._transport = transport
        self._limit = limit
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._eof = False
        self._paused = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._buffer += data
        self._arrived.set()
        if len(self._buffer) > self._limit and not self._paused:
            self._pause(True)
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._arrived.set()

    async def read(self, n: int) -> bytes:
        while not self._buffer and not self._eof:
            self._arrived.clear()
            await self._arrived.wait()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        if self._paused and len(self._buffer) <= self._limit // 2:
            self._pause(False)
        return data

    def _pause(self, pause: bool) -> None:
        transport = self._transport
        if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
            transport.pause_reading() if pause else transport.resume_reading()
        self._paused = pause


class UpgradedWriter:
    def __init__(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        self._request = request
        self._response = response
        self.response = response  # what the handler returns: sent already
        self._closed = False

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("the connection is closed")
        await self._response.write(data)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            transport = self._request.transport
            if transport is not None and not transport.is_closing():
                transport.close()


async def upgrade(request: web.BaseRequest, version: str) -> tuple[RawFeed, UpgradedWriter]:
    """Answer 101 Switching Protocols to SPDY/3.1 (with ``version`` as the stream
    protocol, unless empty) and return the connection's two directions."""
    protocol = request.protocol
    reader = RawFeed(request.transport)
    protocol.set_parser(reader)  # type: ignore[arg-type]
    protocol.keep_alive(False)
    headers: dict[str, str] = {hdrs.CONNECTION: "Upgrade", hdrs.UPGRADE: SPDY}
    if version:
        headers[PROTOCOL_VERSION] = version
    response = web.StreamResponse(status=101, headers=headers)
    await response.prepare(request)
    return reader, UpgradedWriter(request, response)
