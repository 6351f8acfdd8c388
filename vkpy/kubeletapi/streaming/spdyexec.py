"""Exec and attach over SPDY: the kubelet's remote-command protocols v1 to v4.

The client opens one stream per standard stream it asked for, an error stream and
(v3 and v4, with a terminal) a resize stream, each named by its ``streamType``
header; they must all exist within the stream-creation time-out. v4 ends with a
`metav1.Status` on the error stream, the older versions with the failure's message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from vkpy.jsontypes import JSON
from vkpy.kubeletapi.streaming import status as wording
from vkpy.kubeletapi.streaming.bridge import Activity, first_done, idle_watch, run_session
from vkpy.kubeletapi.streaming.channels import SizeDecoder
from vkpy.kubeletapi.streaming.options import StreamOptions
from vkpy.kubeletapi.streaming.spdystreams import PeerStream, PeerStreams, stream_bytes
from vkpy.remote import OutputStream, Process, TerminalSize

logger = logging.getLogger(__name__)

V1, V2, V3, V4 = "channel.k8s.io", "v2.channel.k8s.io", "v3.channel.k8s.io", "v4.channel.k8s.io"
VERSIONS = (V4, V3, V2, V1)  # what the kubelet serves, newest first
STREAM_TYPE = "streamtype"


def expected_streams(options: StreamOptions, version: str) -> set[str]:
    wanted = {"error"}
    wanted |= {name for name in ("stdin", "stdout", "stderr") if getattr(options, name)}
    if options.tty and version in (V3, V4):
        wanted.add("resize")
    return wanted


class StreamWire:
    """A session's output on the client's SPDY streams (the bridge's `Wire`)."""

    def __init__(self, streams: dict[str, PeerStream], *, structured: bool) -> None:
        self._streams = streams
        self._structured = structured

    async def send(self, stream: OutputStream, data: bytes) -> None:
        await self._streams[stream].write(data)

    async def end(self, stream: OutputStream) -> None:
        await self._streams[stream].close()

    async def report(self, status: JSON) -> None:
        error = self._streams["error"]
        data = wording.encode(status, structured=self._structured)
        if data:
            await error.write(data)
        await error.close()


async def _sizes(stream: PeerStream) -> AsyncIterator[TerminalSize]:
    decoder = SizeDecoder()
    async for data in stream_bytes(stream):
        for size in decoder.feed(data):
            yield size


async def _collect(
    connection: PeerStreams, wanted: set[str], streams: dict[str, PeerStream]
) -> bool:
    while not wanted <= streams.keys():
        stream = await connection.accept()
        if stream is None:
            return False
        kind = stream.headers.get(STREAM_TYPE, "")
        if kind in wanted and kind not in streams:
            streams[kind] = stream
        else:
            logger.info("unexpected stream type %r in an exec session", kind)
            stream.reset()
    return True


async def _until_gone(connection: PeerStreams) -> None:
    """Returns when the connection ends; refuses streams opened after the session's."""
    while (stream := await connection.accept()) is not None:
        stream.reset()


async def serve_session(
    connection: PeerStreams,
    process: Process,
    options: StreamOptions,
    version: str,
    *,
    creation_timeout: float,
    idle_timeout: float,
) -> None:
    """Run one exec or attach session on an upgraded SPDY connection."""
    try:
        streams: dict[str, PeerStream] = {}
        wanted = expected_streams(options, version)
        try:
            async with asyncio.timeout(creation_timeout):
                if not await _collect(connection, wanted, streams):
                    return
        except TimeoutError:
            logger.info("timed out waiting for the client to create streams")
            return
        activity = Activity()
        stdin = streams.get("stdin")
        resize = streams.get("resize")
        outputs: list[OutputStream] = [s for s in ("stdout", "stderr") if s in streams]
        session = asyncio.ensure_future(
            run_session(
                process,
                StreamWire(streams, structured=version == V4),
                outputs=outputs,
                command=options.command,
                stdin=stream_bytes(stdin) if stdin is not None else None,
                sizes=_sizes(resize) if resize is not None else None,
                activity=activity,
            )
        )
        await first_done(
            session,
            asyncio.ensure_future(_until_gone(connection)),
            asyncio.ensure_future(idle_watch(activity, idle_timeout)),
        )
    finally:
        await process.close()
