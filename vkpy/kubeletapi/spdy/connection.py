"""A SPDY/3.1 connection over a byte transport, in either role.

One task reads frames and dispatches them; the `Outbox` task writes. Streams the peer
opens get a SYN_REPLY at once, as the Kubernetes Go side does, and wait for `accept`;
`open_stream` opens one of ours. PINGs are answered; `close` sends GOAWAY behind
everything queued, since spdystream stops reading the moment a GOAWAY arrives.
With ``idle_timeout`` the connection resets its streams and closes once no frame went
either way for that long (the kubelet's ``streamingConnectionIdleTimeout``, 4 h by
default); `last_activity` lets a caller run its own policy instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType

from vkpy.errors import StreamProtocolError
from vkpy.kubeletapi.spdy import frames
from vkpy.kubeletapi.spdy.flow import Credit, SendWindows
from vkpy.kubeletapi.spdy.headers import HeaderCompressor, HeaderDecompressor, normal
from vkpy.kubeletapi.spdy.outbox import Outbox
from vkpy.kubeletapi.spdy.stream import Link, SpdyStream
from vkpy.kubeletapi.spdy.transport import ByteReader, ByteWriter

logger = logging.getLogger(__name__)
FRAME_SIZE = 32 * 1024
"""DATA payload per frame: what spdystream's peers write (io.Copy's buffer)."""
READ_SIZE = 64 * 1024
CONTROL_BACKLOG = 1 << 20
"""Queued control bytes (PING replies, mostly) before the reader waits for the writer."""
CLOSE_TIMEOUT = 5.0
"""How long `close` waits for queued frames and the GOAWAY to go out."""


class SpdyConnection:
    def __init__(
        self,
        reader: ByteReader,
        writer: ByteWriter,
        *,
        server: bool,
        idle_timeout: float | None = None,
        max_frame: int = FRAME_SIZE,
        strict_windows: bool = False,
    ) -> None:
        if not 0 < max_frame <= frames.MAX_LENGTH:
            raise ValueError(f"max_frame must be 1 to {frames.MAX_LENGTH}, not {max_frame}")
        self._reader = reader
        self._writer = writer
        self._own_parity = 0 if server else 1
        self._idle_timeout = idle_timeout
        self._parser = frames.FrameParser()
        self._inflate = HeaderDecompressor()
        self._deflate = HeaderCompressor()
        self._outbox = Outbox(writer, on_write=self._touch)
        self._windows = SendWindows(strict=strict_windows)
        self._credit = Credit()
        self._link = Link(self._outbox, self._windows, max_frame, self._consumed, self._forget)
        self._streams: dict[int, SpdyStream] = {}
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._next_id = 2 if server else 1
        self._last_peer_id = 0
        self._next_ping = self._next_id
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._going_away = False
        self._peer_gone = False
        self._ended = False
        self.error: StreamProtocolError | None = None
        """Why the connection ended, when it was not a clean close by either side."""
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._closer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SpdyConnection:
        self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start reading and writing: `__aenter__` does it, and the first `accept`,
        `open_stream` or `ping`."""
        if self._tasks or self._ended:
            return
        self._tasks.append(asyncio.create_task(self._read(), name="spdy-read"))
        self._tasks.append(asyncio.create_task(self._write(), name="spdy-write"))
        if self._idle_timeout:
            watch = self._watch_idle(self._idle_timeout)
            self._tasks.append(asyncio.create_task(watch, name="spdy-idle"))

    @property
    def last_activity(self) -> float:
        """When a frame last went either way, on the event loop's clock."""
        return self._last_activity

    @property
    def closed(self) -> bool:
        return self._ended

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened (already replied to); None once the
        connection ended or the peer went away."""
        self.start()
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)  # for the next caller too
        return stream

    async def open_stream(
        self, headers: Mapping[str, str | Sequence[str]], *, fin: bool = False
    ) -> SpdyStream:
        """Open a stream and wait for the peer's SYN_REPLY; raises StreamProtocolError
        if the peer resets it or the connection ends first."""
        self._check_open()
        self.start()
        stream_id = self._next_id
        if stream_id > frames.MAX_ID:
            raise StreamProtocolError("SPDY connection ran out of stream ids")
        self._next_id += 2
        block = self._deflate.compress(headers)
        stream = SpdyStream(self._link, stream_id, normal(headers), local_closed=fin)
        self._streams[stream_id] = stream
        self._outbox.send(frames.encode(frames.SynStream(stream_id, block, fin=fin)))
        try:
            await stream.replied
        except asyncio.CancelledError:
            stream.reset()
            raise
        return stream

    async def ping(self) -> float:
        """Round-trip time of one PING, in seconds."""
        if self._ended:
            raise StreamProtocolError("SPDY connection is closed")
        self.start()
        ping_id = self._next_ping
        self._next_ping = ping_id + 2 if ping_id + 2 <= frames.MAX_ID else 2 - self._own_parity
        answered = self._loop.create_future()
        self._pings[ping_id] = answered
        start = self._loop.time()
        self._outbox.send(frames.encode(frames.Ping(ping_id)))
        try:
            await answered
        finally:
            self._pings.pop(ping_id, None)
        return self._loop.time() - start

    async def close(self, status: int = frames.GoAwayStatus.OK) -> None:
        """Send GOAWAY after what is queued, then end the connection and its transport.
        Streams still open end: their reads give what came, then b""."""
        if not self._ended and not self._going_away and self._tasks:
            self._going_away = True
            goaway = frames.encode(frames.GoAway(self._last_peer_id, status))
            sent = self._outbox.send_data(goaway)
            with contextlib.suppress(StreamProtocolError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await sent
        self._end(None)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection ended and its transport is closed."""
        while self._closer is None:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if not self._tasks:
                return
        await self._closer

    def _check_open(self) -> None:
        if self._ended or self._going_away or self._peer_gone:
            raise StreamProtocolError("SPDY connection is closing or closed")

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    def _consumed(self, size: int) -> None:
        delta = self._credit.consumed(size)
        if delta:
            self._outbox.send(frames.encode(frames.WindowUpdate(0, delta)))

    def _forget(self, stream: SpdyStream) -> None:
        self._streams.pop(stream.id, None)

    async def _write(self) -> None:
        try:
            await self._outbox.run()
        except StreamProtocolError as exc:
            self._end(exc)

    async def _read(self) -> None:
        error: StreamProtocolError | None = None
        try:
            await self._read_frames()
        except StreamProtocolError as exc:
            error = exc
        finally:
            self._end(error)

    async def _read_frames(self) -> None:
        while True:
            try:
                data = await self._reader.read(READ_SIZE)
            except (OSError, EOFError) as exc:
                raise StreamProtocolError(f"SPDY connection lost while reading: {exc}") from exc
            if not data:
                if self._parser.pending:
                    raise StreamProtocolError(
                        f"SPDY connection ended inside a frame ({self._parser.pending} bytes "
                        "of it came)"
                    )
                return
            self._touch()
            try:
                for frame in self._parser.feed(data):
                    await self._dispatch(frame)
            except StreamProtocolError:
                await self._refuse_peer()
                raise
            if self._outbox.control_backlog > CONTROL_BACKLOG:
                await self._outbox.written()

    async def _refuse_peer(self) -> None:
        """The peer broke the protocol: tell it with GOAWAY, briefly, before ending."""
        self._going_away = True
        goaway = frames.GoAway(self._last_peer_id, frames.GoAwayStatus.PROTOCOL_ERROR)
        sent = self._outbox.send_data(frames.encode(goaway))
        with contextlib.suppress(StreamProtocolError, TimeoutError):
            async with asyncio.timeout(1.0):
                await sent

    async def _dispatch(self, frame: frames.Frame) -> None:
        match frame:
            case frames.Data():
                await self._on_data(frame)
            case frames.SynStream():
                self._on_syn_stream(frame)
            case frames.SynReply() | frames.HeadersFrame():
                self._on_headers(frame)
            case frames.RstStream(stream_id, status):
                if (stream := self._streams.get(stream_id)) is not None:
                    stream.peer_reset(status)
            case frames.Settings(entries):
                for entry in entries:
                    self._on_setting(entry)
            case frames.Ping(ping_id):
                self._on_ping(ping_id)
            case frames.GoAway(last_good_id):
                self._on_goaway(last_good_id)
            case frames.WindowUpdate(stream_id, delta):
                if stream_id == 0:
                    self._windows.widen_session(delta)
                elif (stream := self._streams.get(stream_id)) is not None:
                    self._windows.widen(stream, delta)

    async def _on_data(self, frame: frames.Data) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is None or not stream.received(frame.data, fin=frame.fin):
            self._consumed(len(frame.data))  # dropped: the session window gets it back
        if stream is not None:
            await stream.room()

    def _on_headers(self, frame: frames.SynReply | frames.HeadersFrame) -> None:
        headers = self._inflate.decompress(frame.block)  # always: the zlib state goes on
        stream = self._streams.get(frame.stream_id)
        if stream is None:
            return
        if isinstance(frame, frames.SynReply):
            if stream.replied.done():
                return  # a second reply: spdystream ignores it too
            stream.reply_headers = headers
            stream.replied.set_result(None)
        elif frame.stream_id % 2 == self._own_parity:
            stream.reply_headers.update(headers)
        else:
            stream.headers.update(headers)
        if frame.fin:
            stream.received(b"", fin=True)

    def _on_setting(self, entry: frames.Setting) -> None:
        if entry.id == frames.SettingId.INITIAL_WINDOW_SIZE:
            self._windows.set_initial(entry.value, list(self._streams.values()))

    def _on_ping(self, ping_id: int) -> None:
        if ping_id % 2 != self._own_parity:
            self._outbox.send(frames.encode(frames.Ping(ping_id)))
        elif (answered := self._pings.get(ping_id)) is not None and not answered.done():
            answered.set_result(None)

    def _on_syn_stream(self, frame: frames.SynStream) -> None:
        headers = self._inflate.decompress(frame.block)  # always: the zlib state goes on
        stream_id = frame.stream_id
        if stream_id % 2 == self._own_parity or stream_id <= self._last_peer_id:
            status = frames.RstStatus.PROTOCOL_ERROR
            self._outbox.send(frames.encode(frames.RstStream(stream_id, status)))
            return
        self._last_peer_id = stream_id
        if self._going_away or self._ended:
            status = frames.RstStatus.REFUSED_STREAM
            self._outbox.send(frames.encode(frames.RstStream(stream_id, status)))
            return
        stream = SpdyStream(
            self._link,
            stream_id,
            headers,
            local_closed=frame.unidirectional,
            remote_closed=frame.fin,
        )
        stream.replied.set_result(None)
        if not stream.done:
            self._streams[stream_id] = stream
        if not frame.unidirectional:
            reply = frames.SynReply(stream_id, self._deflate.compress({}))
            self._outbox.send(frames.encode(reply))
        self._incoming.put_nowait(stream)

    def _on_goaway(self, last_good_id: int) -> None:
        """The peer takes no new streams: ours past ``last_good_id`` never started."""
        self._peer_gone = True
        for stream in list(self._streams.values()):
            if stream.id % 2 == self._own_parity and stream.id > last_good_id:
                stream.peer_reset(frames.RstStatus.REFUSED_STREAM)
        self._incoming.put_nowait(None)

    async def _watch_idle(self, timeout: float) -> None:
        # The deadline moves with every frame: sleep to the current one, then look again.
        while True:
            left = self._last_activity + timeout - self._loop.time()
            if left <= 0:
                break
            await asyncio.sleep(left)
        logger.info("SPDY connection idle for %.0f s: closing it", timeout)
        for stream in list(self._streams.values()):
            stream.reset()
        await self.close()

    def _end(self, error: StreamProtocolError | None) -> None:
        """End everything once: streams, pings, `accept`, the tasks, the transport."""
        if self._ended:
            return
        self._ended = True
        self.error = error
        if error is not None:
            logger.info("SPDY connection ended: %s", error)
        lost = error or StreamProtocolError("SPDY connection closed")
        self._outbox.fail(lost)
        for stream in self._streams.values():
            stream.connection_lost(lost)
        self._streams.clear()
        for answered in self._pings.values():
            if not answered.done():
                answered.set_exception(lost)
        self._incoming.put_nowait(None)
        self._windows.wake()
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        self._closer = asyncio.create_task(self._close_transport(others), name="spdy-close")

    async def _close_transport(self, tasks: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(OSError, RuntimeError):
            await self._writer.close()
