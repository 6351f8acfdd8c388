"""Exec, attach and port-forward over a WebSocket, as the kubelet serves them.

Exec and attach: one channel per stream (see `channels`). The first message is an
empty one on stdout (or stderr, or error), which tells the client the session is
ready; the error channel carries the outcome at the end. A client that goes away
ends the session and the process with it.

Port-forward (``portforward.k8s.io`` channels): two channels per port of the query,
data then error, each opened by the port number as two little-endian bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import WSMsgType, web

from vkpy.errors import BackendError
from vkpy.jsontypes import JSON
from vkpy.kubeletapi.streaming import status as wording
from vkpy.kubeletapi.streaming.bridge import Activity, Inbox, first_done, idle_watch, run_session
from vkpy.kubeletapi.streaming.channels import (
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    ChannelProtocol,
    Closed,
    Data,
    SizeDecoder,
    decode,
    encode,
)
from vkpy.kubeletapi.streaming.options import StreamOptions
from vkpy.remote import OutputStream, Process, TerminalSize, Tunnel

logger = logging.getLogger(__name__)

MAX_MESSAGE = 16 * 1024 * 1024
READ_CHUNK = 32 * 1024
OpenTunnel = Callable[[int], Awaitable[Tunnel]]


async def accept(request: web.Request, protocol: ChannelProtocol | None) -> web.WebSocketResponse:
    """The WebSocket handshake, with ``protocol`` as the agreed subprotocol (None: the
    client offered none)."""
    protocols = (protocol.name,) if protocol is not None else ()
    ws = web.WebSocketResponse(protocols=protocols, max_msg_size=MAX_MESSAGE, autoping=True)
    await ws.prepare(request)
    return ws


class ChannelWire:
    """A session's output as channel messages (the bridge's `Wire`)."""

    def __init__(self, ws: web.WebSocketResponse, protocol: ChannelProtocol) -> None:
        self._ws = ws
        self._protocol = protocol

    async def put(self, channel: int, data: bytes) -> None:
        message = encode(self._protocol, channel, data)
        if isinstance(message, str):
            await self._ws.send_str(message)
        else:
            await self._ws.send_bytes(message)

    async def send(self, stream: OutputStream, data: bytes) -> None:
        await self.put(STDOUT if stream == "stdout" else STDERR, data)

    async def end(self, stream: OutputStream) -> None:
        pass  # the protocol has no end of an output channel: the session's end says it

    async def report(self, status: JSON) -> None:
        data = wording.encode(status, structured=self._protocol.structured_status)
        if data:
            await self.put(ERROR, data)


async def _read_inputs(
    ws: web.WebSocketResponse,
    protocol: ChannelProtocol,
    *,
    stdin: Inbox[bytes] | None,
    sizes: Inbox[TerminalSize] | None,
    activity: Activity,
) -> None:
    """Dispatch the client's messages until it closes the WebSocket."""
    decoder = SizeDecoder()
    async for message in ws:
        if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            continue
        activity.touch()
        frame = decode(protocol, message.data)
        if isinstance(frame, Closed) and frame.channel == STDIN and stdin is not None:
            await stdin.end()
        elif isinstance(frame, Data) and frame.channel == STDIN and stdin is not None:
            await stdin.put(frame.data)
        elif isinstance(frame, Data) and frame.channel == RESIZE and sizes is not None:
            for size in decoder.feed(frame.data):
                await sizes.put(size)


async def serve_session(
    request: web.Request,
    process: Process,
    options: StreamOptions,
    protocol: ChannelProtocol,
    *,
    offered: bool,
    idle_timeout: float,
) -> web.WebSocketResponse:
    """Run one exec or attach session over a WebSocket."""
    ws = await accept(request, protocol if offered else None)
    wire = ChannelWire(ws, protocol)
    activity = Activity()
    stdin: Inbox[bytes] | None = Inbox() if options.stdin else None
    sizes: Inbox[TerminalSize] | None = Inbox() if options.tty else None
    outputs: list[OutputStream] = [s for s in ("stdout", "stderr") if getattr(options, s)]
    ready = STDOUT if options.stdout else STDERR if options.stderr else ERROR
    try:
        await wire.put(ready, b"")
        session = asyncio.ensure_future(
            run_session(
                process,
                wire,
                outputs=outputs,
                command=options.command,
                stdin=stdin.items() if stdin is not None else None,
                sizes=sizes.items() if sizes is not None else None,
                activity=activity,
            )
        )
        reader = asyncio.ensure_future(
            _read_inputs(ws, protocol, stdin=stdin, sizes=sizes, activity=activity)
        )
        await first_done(session, reader, asyncio.ensure_future(idle_watch(activity, idle_timeout)))
    finally:
        await process.close()
        await ws.close()
    return ws


# ---------------------------------------------------------------- port-forward


async def _tunnel_out(tunnel: Tunnel, wire: ChannelWire, channel: int, activity: Activity) -> None:
    while data := await tunnel.read(READ_CHUNK):
        activity.touch()
        await wire.put(channel, data)


async def _tunnel_in(tunnel: Tunnel, inbox: Inbox[bytes], activity: Activity) -> None:
    async for data in inbox.items():
        activity.touch()
        await tunnel.write(data)
    await tunnel.write_eof()


async def _forward_port(
    index: int,
    port: int,
    *,
    wire: ChannelWire,
    inbox: Inbox[bytes],
    open_tunnel: OpenTunnel,
    activity: Activity,
    describe: str,
) -> None:
    data_channel, error_channel = 2 * index, 2 * index + 1
    try:
        tunnel = await open_tunnel(port)
    except BackendError as exc:
        message = f"error forwarding port {port} to pod {describe}: {exc}"
        await wire.put(error_channel, message.encode())
        return
    try:
        pumps = (
            _tunnel_out(tunnel, wire, data_channel, activity),
            _tunnel_in(tunnel, inbox, activity),
        )
        await asyncio.gather(*pumps)
    except (BackendError, OSError) as exc:
        message = f"error forwarding port {port} to pod {describe}: {exc}"
        with contextlib.suppress(ConnectionError):
            await wire.put(error_channel, message.encode())
    finally:
        await tunnel.close()


async def _read_forward_inputs(
    ws: web.WebSocketResponse,
    protocol: ChannelProtocol,
    inboxes: Sequence[Inbox[bytes]],
    activity: Activity,
) -> None:
    async for message in ws:
        if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            continue
        activity.touch()
        frame = decode(protocol, message.data)
        if isinstance(frame, Data) and frame.channel % 2 == 0 and frame.channel // 2 < len(inboxes):
            await inboxes[frame.channel // 2].put(frame.data)


async def serve_forward(
    request: web.Request,
    ports: Sequence[int],
    open_tunnel: OpenTunnel,
    protocol: ChannelProtocol,
    *,
    offered: bool,
    describe: str,
    idle_timeout: float,
) -> web.WebSocketResponse:
    """Forward ``ports`` over the ``portforward.k8s.io`` channels."""
    ws = await accept(request, protocol if offered else None)
    wire = ChannelWire(ws, protocol)
    activity = Activity()
    inboxes: list[Inbox[bytes]] = [Inbox() for _ in ports]
    try:
        for index, port in enumerate(ports):
            opening = struct.pack("<H", port)
            await wire.put(2 * index, opening)
            await wire.put(2 * index + 1, opening)
        forwards = asyncio.ensure_future(
            asyncio.gather(
                *(
                    _forward_port(
                        i,
                        port,
                        wire=wire,
                        inbox=inboxes[i],
                        open_tunnel=open_tunnel,
                        activity=activity,
                        describe=describe,
                    )
                    for i, port in enumerate(ports)
                )
            )
        )
        reader = asyncio.ensure_future(_read_forward_inputs(ws, protocol, inboxes, activity))
        await first_done(
            forwards, reader, asyncio.ensure_future(idle_watch(activity, idle_timeout))
        )
    finally:
        await ws.close()
    return ws
