"""SPDY connections: our client and server over an in-memory pipe, and a hand-driven peer
for what a well-behaved one never does."""

import asyncio
import hashlib
import time

import pytest

from tests.unit.spdypipe import RawPeer, connected, ends, raw
from vkpy.errors import StreamProtocolError
from vkpy.kubeletapi.spdy import SpdyConnection, SpdyStream
from vkpy.kubeletapi.spdy.frames import (
    Data,
    GoAway,
    GoAwayStatus,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    Setting,
    SettingId,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
    data_head,
)

MIB = 1 << 20


async def read_all(stream: SpdyStream) -> bytes:
    parts = []
    while chunk := await stream.read():
        parts.append(chunk)
    return b"".join(parts)


async def echo(stream: SpdyStream) -> None:
    while chunk := await stream.read():
        await stream.write(chunk)
    await stream.close()


async def serve(server: SpdyConnection, handler=echo) -> list[asyncio.Task]:
    tasks = []
    while (stream := await server.accept()) is not None:
        tasks.append(asyncio.create_task(handler(stream)))
    return tasks


async def test_many_streams_carry_their_own_bytes_and_headers():
    async def one(client: SpdyConnection, i: int) -> int:
        stream = await client.open_stream({"streamType": "data", "Index": str(i)})
        payload = hashlib.sha256(str(i).encode()).digest() * (100 * i + 1)

        async def send() -> None:
            await stream.write(payload)
            await stream.close()

        got, _ = await asyncio.gather(read_all(stream), send())
        assert got == payload
        assert stream.headers == {"streamtype": "data", "index": str(i)}
        return stream.id

    async with connected() as (client, server):
        serving = asyncio.create_task(serve(server))
        async with asyncio.timeout(20):
            ids = await asyncio.gather(*(one(client, i) for i in range(60)))
        assert sorted(ids) == list(range(1, 120, 2))  # a client's ids: odd, each once
        await client.close()
        handlers = await serving
        assert len(handlers) == 60
        await asyncio.gather(*handlers)


@pytest.mark.parametrize("strict", [False, True], ids=["auto-windows", "strict-windows"])
async def test_100_mib_through_one_stream(strict, capsys):
    """Throughput of one stream, and flow control that never stalls it (strict: both
    sides enforce the 64 KiB windows, so every byte waits for WINDOW_UPDATEs)."""
    size = 100 * MIB
    block = bytes(range(256)) * 4096  # 1 MiB
    async with connected(strict_windows=strict) as (client, server):

        async def count(stream: SpdyStream) -> None:
            total = 0
            digest = hashlib.sha256()
            while chunk := await stream.read():
                total += len(chunk)
                digest.update(chunk)
            await stream.write(f"{total} {digest.hexdigest()}".encode())
            await stream.close()

        serving = asyncio.create_task(serve(server, count))
        start = time.perf_counter()
        async with asyncio.timeout(120):
            stream = await client.open_stream({"mode": "upload"})
            for _ in range(size // len(block)):
                await stream.write(block)
            await stream.close()
            answer = await read_all(stream)
        seconds = time.perf_counter() - start
        expected = hashlib.sha256(block * (size // len(block))).hexdigest()
        assert answer.decode() == f"{size} {expected}"
        serving.cancel()
    with capsys.disabled():
        print(
            f"\nSPDY 100 MiB one stream ({'strict' if strict else 'auto'} windows): "
            f"{size / MIB / seconds:.0f} MiB/s"
        )


async def test_half_close_lets_the_other_side_keep_writing():
    async with connected() as (client, server):
        stream = await client.open_stream({"mode": "half"})
        await stream.write(b"question")
        await stream.close()
        with pytest.raises(StreamProtocolError, match="closed for writing"):
            await stream.write(b"more")
        theirs = await server.accept()
        assert theirs is not None
        assert await read_all(theirs) == b"question"
        await theirs.write(b"answer, after your FIN")
        await theirs.close()
        assert await read_all(stream) == b"answer, after your FIN"


async def test_reset_ends_both_ways_and_says_why():
    async with connected() as (client, server):
        stream = await client.open_stream({})
        theirs = await server.accept()
        assert theirs is not None
        await stream.write(b"unread")
        stream.reset()
        assert await stream.read() == b""
        async with asyncio.timeout(5):
            assert await theirs.read() in (b"unread", b"")
            while await theirs.read():
                pass
        assert theirs.reset_status == RstStatus.CANCEL
        with pytest.raises(StreamProtocolError, match="reset by the peer"):
            await theirs.write(b"too late")
        assert stream.reset_status is None  # we reset it: no status from the peer


async def test_a_reset_before_the_reply_fails_open_stream():
    async with raw(server=False) as (client, peer):
        opening = asyncio.create_task(client.open_stream({"x": "1"}))
        syn = await peer.next_of(SynStream)
        assert peer.inflate.decompress(syn.block) == {"x": "1"}
        await peer.send(RstStream(syn.stream_id, RstStatus.REFUSED_STREAM))
        with pytest.raises(StreamProtocolError, match="reset by the peer"):
            await opening


async def test_pings_both_ways():
    async with connected() as (client, server):
        assert 0 < await client.ping() < 5
        assert 0 < await server.ping() < 5


async def test_a_peer_ping_is_echoed_and_ids_follow_the_role():
    async with raw() as (server, peer):
        await peer.send(Ping(1), Ping(3))
        assert await peer.next_of(Ping) == Ping(1)
        assert await peer.next_of(Ping) == Ping(3)
        pinging = asyncio.create_task(server.ping())
        mine = await peer.next_of(Ping)
        assert mine.ping_id % 2 == 0  # a server's pings are even
        await peer.send(mine)
        assert await pinging >= 0


async def test_the_server_replies_at_once_and_rejects_bad_stream_ids():
    async with raw() as (server, peer):
        await peer.send(SynStream(1, peer.block({"streamtype": "error"})))
        reply = await peer.next_of(SynReply)
        assert reply.stream_id == 1
        assert peer.inflate.decompress(reply.block) == {}
        stream = await server.accept()
        assert stream is not None
        assert (stream.id, stream.headers) == (1, {"streamtype": "error"})
        await peer.send(SynStream(2, peer.block({})))  # even: a server's id
        assert await peer.next_of(RstStream) == RstStream(2, RstStatus.PROTOCOL_ERROR)
        await peer.send(SynStream(1, peer.block({})))  # not above the last one
        assert await peer.next_of(RstStream) == RstStream(1, RstStatus.PROTOCOL_ERROR)
        # The blocks of refused streams were still inflated: the next one decodes.
        await peer.send(SynStream(5, peer.block({"port": "80"})))
        stream = await server.accept()
        assert stream is not None
        assert stream.headers == {"port": "80"}


async def test_close_sends_goaway_last_and_the_peer_sees_the_end():
    a, b = ends()
    peer = RawPeer(b, a)
    server = SpdyConnection(a, a, server=True)
    server.start()
    await peer.send(SynStream(1, peer.block({})), SynStream(3, peer.block({})))
    stream = await server.accept()
    assert stream is not None
    await stream.write(b"bye")
    await stream.close()
    await server.close()
    seen = []
    while (frame := await peer.next()) is not None:
        seen.append(frame)
    assert seen[-1] == GoAway(3, GoAwayStatus.OK)
    assert Data(1, b"bye") in seen
    late = await server.accept()  # came before the close: handed out, already ended
    assert late is not None
    assert await late.read() == b""
    assert await server.accept() is None
    assert server.error is None


async def test_the_peers_goaway_ends_accept_and_refuses_streams_it_never_took():
    async with connected() as (client, server):
        first = await client.open_stream({})
        await client.close()
        assert await server.accept() is not None  # the stream it already had
        assert await server.accept() is None
        with pytest.raises(StreamProtocolError, match="closing or closed"):
            await client.open_stream({})
        assert first.reset_status is None


async def test_goaway_refuses_our_streams_past_the_last_good_one():
    async with raw(server=False) as (client, peer):
        first = asyncio.create_task(client.open_stream({}))
        second = asyncio.create_task(client.open_stream({}))
        one, three = await peer.next_of(SynStream), await peer.next_of(SynStream)
        await peer.send(SynReply(one.stream_id, peer.block({})), GoAway(one.stream_id))
        assert (await first).id == 1
        with pytest.raises(StreamProtocolError, match="reset by the peer"):
            await second
        assert three.stream_id == 3


async def test_eof_in_the_middle_of_a_frame_ends_the_connection_with_an_error():
    async with raw() as (server, peer):
        stream = await peer.open(server)
        await peer.send(data_head(1, 100) + b"only part")
        await peer.end.close()
        assert await stream.read() == b""
        assert await server.accept() is None
        assert isinstance(server.error, StreamProtocolError)
        assert "inside a frame (17 bytes" in str(server.error)
        with pytest.raises(StreamProtocolError):
            await stream.write(b"x")


async def test_data_already_received_stays_readable_after_the_peer_hangs_up():
    async with raw() as (server, peer):
        await peer.send(SynStream(1, peer.block({})), Data(1, b"last words", fin=True))
        await peer.end.close()
        stream = await server.accept()
        assert stream is not None
        assert await read_all(stream) == b"last words"
        assert server.error is None


async def test_a_protocol_violation_gets_goaway_protocol_error():
    async with raw() as (server, peer):
        await peer.send(bytes.fromhex("8002000600000004") + b"\0\0\0\1")  # SPDY/2
        assert await peer.next_of(GoAway) == GoAway(0, GoAwayStatus.PROTOCOL_ERROR)
        assert await server.accept() is None
        assert "version 2" in str(server.error)


async def test_writes_are_split_into_frames_of_the_frame_size():
    async with raw(max_frame=32768) as (server, peer):
        stream = await peer.open(server)
        await stream.write(bytes(100_000))
        await stream.close()
        sizes = []
        while not (frame := await peer.next_of(Data)).fin:
            sizes.append(len(frame.data))
        assert sizes == [32768, 32768, 32768, 1696]


async def test_a_write_waits_for_a_transport_nobody_reads():
    async with raw(capacity=64 * 1024) as (server, peer):
        stream = await peer.open(server)
        writing = asyncio.create_task(stream.write(bytes(1 * MIB)))
        await asyncio.sleep(0.2)
        assert not writing.done()
        assert peer.near.outgoing.written < 300 * 1024  # the pipe, a batch and what is in flight
        received = 0
        while received < MIB:
            received += len((await peer.next_of(Data)).data)
        await writing


async def test_without_window_updates_we_send_on_as_spdystream_expects():
    """spdystream never sends WINDOW_UPDATE: a peer that does not must not stall us."""
    async with raw() as (server, peer):
        stream = await peer.open(server)
        writing = asyncio.create_task(stream.write(bytes(1 * MIB)))
        received = 0
        async with asyncio.timeout(5):
            while received < MIB:
                received += len((await peer.next_of(Data)).data)
        await writing


@pytest.mark.parametrize("signal", ["window-update", "settings", "strict"])
async def test_a_peer_that_uses_windows_gets_them_honoured(signal):
    async with raw(strict_windows=signal == "strict") as (server, peer):
        if signal == "settings":
            await peer.send(Settings((Setting(SettingId.INITIAL_WINDOW_SIZE, 16384),)))
        await peer.send(SynStream(1, peer.block({})))
        if signal == "window-update":
            await peer.send(WindowUpdate(0, 0))  # says it does flow control, widens nothing
        stream = await server.accept()
        assert stream is not None
        await asyncio.sleep(0.05)
        writing = asyncio.create_task(stream.write(bytes(200_000)))
        window = 16384 if signal == "settings" else 65536
        received = 0
        while received < window:
            received += len((await peer.next_of(Data)).data)
        assert received == window
        with pytest.raises(TimeoutError):
            await peer.next_of(Data, timeout=0.2)
        await peer.send(WindowUpdate(1, 1000), WindowUpdate(0, 1000))
        assert len((await peer.next_of(Data)).data) == 1000
        await peer.send(WindowUpdate(1, 1 << 20), WindowUpdate(0, 1 << 20))
        await writing


async def test_what_the_application_reads_is_given_back_in_window_updates():
    async with raw() as (server, peer):
        await peer.send(SynStream(1, peer.block({})), Data(1, bytes(40_000)))
        stream = await server.accept()
        assert stream is not None
        with pytest.raises(TimeoutError):
            await peer.next_of(WindowUpdate, timeout=0.1)  # nothing read, nothing given
        assert len(await stream.read()) == 40_000
        updates = {await peer.next_of(WindowUpdate), await peer.next_of(WindowUpdate)}
        assert updates == {WindowUpdate(1, 40_000), WindowUpdate(0, 40_000)}


async def test_a_stream_nobody_reads_stops_the_reader_and_slows_the_peer():
    async with raw(capacity=64 * 1024) as (server, peer):
        stream = await peer.open(server)
        chunk = Data(1, bytes(32768))

        async def flood() -> None:
            for _ in range(128):  # 4 MiB
                await peer.send(chunk)

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(0.3)
        assert not flooding.done()
        assert peer.end.outgoing.written < 2 * MIB  # the stream's buffer, the pipe, one read
        received = 0
        async with asyncio.timeout(10):
            while received < 4 * MIB:
                received += len(await stream.read())
        await flooding


async def test_idle_connection_resets_its_streams_and_closes():
    async with raw(idle_timeout=0.3) as (server, peer):
        stream = await peer.open(server)
        start = server.last_activity
        await asyncio.sleep(0.2)
        await peer.send(Ping(1))
        await peer.next_of(Ping)
        assert server.last_activity > start
        assert not server.closed
        assert await peer.next_of(RstStream, timeout=2) == RstStream(1, RstStatus.CANCEL)
        assert await peer.next_of(GoAway) == GoAway(1, GoAwayStatus.OK)
        async with asyncio.timeout(2):
            await server.wait_closed()
        assert server.closed
        assert await stream.read() == b""


async def test_a_lost_transport_fails_writes():
    async with raw() as (server, peer):
        stream = await peer.open(server)
        await peer.near.outgoing.close()  # the pipe we write to is gone
        with pytest.raises(StreamProtocolError, match="lost while writing"):
            await stream.write(b"x" * 100_000)
        assert server.closed


async def test_a_stream_opened_with_fin_reads_its_end_and_can_still_answer():
    async with raw() as (server, peer):
        await peer.send(SynStream(1, peer.block({"x": "1"}), fin=True))
        stream = await server.accept()
        assert stream is not None
        assert await stream.read() == b""
        await stream.write(b"answer")
        await stream.close()
        assert await peer.next_of(Data) == Data(1, b"answer")
        assert await peer.next_of(Data) == Data(1, b"", fin=True)


async def test_headers_frames_add_to_the_streams_headers():
    async with raw() as (server, peer):
        stream = await peer.open(server)
        await peer.send(HeadersFrame(1, peer.block({"later": "yes"}), fin=True))
        assert await stream.read() == b""
        assert stream.headers == {"later": "yes"}
