"""The server side of a SPDY/3.1 connection, for as long as a session lasts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from vkpy.kubeletapi.spdy.connection import SpdyConnection
from vkpy.kubeletapi.spdy.transport import ByteReader, ByteWriter
from vkpy.kubeletapi.streaming.spdystreams import PeerStreams


@asynccontextmanager
async def spdy_connection(reader: ByteReader, writer: ByteWriter) -> AsyncIterator[PeerStreams]:
    """Serve SPDY over ``reader``/``writer``; closed (GOAWAY) when the block ends. The
    idle time-out is the session's, which also counts the backend's side."""
    async with SpdyConnection(reader, writer, server=True) as connection:
        yield connection
