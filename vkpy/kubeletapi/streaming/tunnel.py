"""A WebSocket as a byte stream: kubectl tunnels its SPDY port-forward connection in
binary messages (``SPDY/3.1+portforward.k8s.io``), with no framing of its own."""

from __future__ import annotations

from aiohttp import WSMsgType, web

_ENDS = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class WebSocketBytes:
    """The SPDY connection's reader and writer over one WebSocket."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._pending = b""

    async def read(self, n: int) -> bytes:
        while not self._pending:
            message = await self._ws.receive()
            if message.type == WSMsgType.BINARY:
                self._pending = message.data
            elif message.type in _ENDS:
                return b""
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    async def write(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self) -> None:
        await self._ws.close()
