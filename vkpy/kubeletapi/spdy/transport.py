"""The byte transport a SPDY connection runs over: two small protocols, so the same
connection serves an upgraded HTTP socket, a WebSocket tunnel or an in-memory pipe."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol


class ByteReader(Protocol):
    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, at least one; b"" once the peer's side ended."""
        ...


class ByteWriter(Protocol):
    async def write(self, data: bytes) -> None:
        """Send ``data``, waiting while the transport's buffers are full."""

    async def close(self) -> None:
        """End the transport; safe to call again."""


class StreamWriterAdapter:
    """A `ByteWriter` over an asyncio StreamWriter (``asyncio.StreamReader`` already is
    a `ByteReader`)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
