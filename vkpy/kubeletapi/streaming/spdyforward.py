"""Port-forward over SPDY (``portforward.k8s.io``), as the kubelet serves it.

For every connection the client makes to a forwarded port it opens two streams with
the same ``requestID`` header: ``streamType: error`` and ``streamType: data``, each
with a ``port`` header. Once both exist the backend opens a `Tunnel` to the port and
bytes flow both ways; a failure is written as text on the error stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from vkpy.errors import BackendError, StreamProtocolError
from vkpy.kubeletapi.streaming.bridge import Activity, first_done, idle_watch
from vkpy.kubeletapi.streaming.options import BadStreamRequest, parse_port
from vkpy.kubeletapi.streaming.spdystreams import PeerStream, PeerStreams
from vkpy.remote import Tunnel

logger = logging.getLogger(__name__)

VERSION = "portforward.k8s.io"
READ_CHUNK = 32 * 1024
OpenTunnel = Callable[[int], Awaitable[Tunnel]]


def request_id(stream: PeerStream) -> str:
    """The pair a stream belongs to; clients before ``requestID`` paired streams by id
    (error stream n, data stream n + 2), as the kubelet still accepts."""
    given = stream.headers.get("requestid", "")
    if given:
        return given
    offset = 2 if stream.headers.get("streamtype") == "data" else 0
    return str(stream.id - offset)


def check_headers(stream: PeerStream) -> int:
    """The stream's port; raises BadStreamRequest for headers the kubelet refuses."""
    port_text = stream.headers.get("port", "")
    if not port_text:
        raise BadStreamRequest('"port" header is required')
    port = parse_port(port_text)
    kind = stream.headers.get("streamtype", "")
    if kind not in ("data", "error"):
        raise BadStreamRequest(f"invalid stream type {kind!r}")
    return port


@dataclass
class Pair:
    port: int
    streams: dict[str, PeerStream] = field(default_factory=dict)
    complete: asyncio.Event = field(default_factory=asyncio.Event)


async def _copy_in(data: PeerStream, tunnel: Tunnel, activity: Activity) -> None:
    while chunk := await data.read():
        activity.touch()
        await tunnel.write(chunk)
    await tunnel.write_eof()


async def _copy_out(tunnel: Tunnel, data: PeerStream, activity: Activity) -> None:
    while chunk := await tunnel.read(READ_CHUNK):
        activity.touch()
        await data.write(chunk)
    await data.close()


async def _forward(pair: Pair, open_tunnel: OpenTunnel, describe: str, activity: Activity) -> None:
    data, error = pair.streams["data"], pair.streams["error"]
    tunnel: Tunnel | None = None
    try:
        tunnel = await open_tunnel(pair.port)
        await asyncio.gather(_copy_in(data, tunnel, activity), _copy_out(tunnel, data, activity))
    except (BackendError, StreamProtocolError, OSError) as exc:
        message = f"error forwarding port {pair.port} to pod {describe}: {exc}"
        logger.info("%s", message)
        with contextlib.suppress(StreamProtocolError, OSError):
            await error.write(message.encode())
            data.reset()
    finally:
        if tunnel is not None:
            await tunnel.close()
        with contextlib.suppress(StreamProtocolError, OSError):
            await error.close()


async def _expire(pair: Pair, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await pair.complete.wait()
    except TimeoutError:
        error = pair.streams.get("error")
        if error is not None:
            with contextlib.suppress(StreamProtocolError, OSError):
                await error.write(b"timed out waiting for streams")
                await error.close()


async def _accept_pairs(
    connection: PeerStreams,
    open_tunnel: OpenTunnel,
    describe: str,
    creation_timeout: float,
    activity: Activity,
) -> None:
    pairs: dict[str, Pair] = {}
    tasks: set[asyncio.Task[None]] = set()
    try:
        while (stream := await connection.accept()) is not None:
            activity.touch()
            try:
                port = check_headers(stream)
            except BadStreamRequest as exc:
                logger.info("refused a port-forward stream: %s", exc)
                stream.reset()
                continue
            key = request_id(stream)
            pair = pairs.get(key)
            if pair is None:
                pair = pairs[key] = Pair(port)
                tasks.add(asyncio.ensure_future(_expire(pair, creation_timeout)))
            kind = stream.headers["streamtype"]
            if kind in pair.streams:
                stream.reset()
                continue
            pair.streams[kind] = stream
            if len(pair.streams) == 2:
                pair.complete.set()
                del pairs[key]
                tasks.add(asyncio.ensure_future(_forward(pair, open_tunnel, describe, activity)))
            tasks = {t for t in tasks if not t.done()}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve_forward(
    connection: PeerStreams,
    open_tunnel: OpenTunnel,
    *,
    describe: str,
    creation_timeout: float,
    idle_timeout: float,
) -> None:
    """Serve port-forward streams until the client closes the connection."""
    activity = Activity()
    await first_done(
        asyncio.ensure_future(
            _accept_pairs(connection, open_tunnel, describe, creation_timeout, activity)
        ),
        asyncio.ensure_future(idle_watch(activity, idle_timeout)),
    )
