"""SPDY frames: the bytes moby/spdystream writes, round trips, and the incremental parser."""

import pytest

from vkpy.errors import StreamProtocolError
from vkpy.kubeletapi.spdy import frames
from vkpy.kubeletapi.spdy.frames import (
    Data,
    FrameParser,
    GoAway,
    HeadersFrame,
    Ping,
    RstStream,
    Setting,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
    encode,
)

# Written by moby/spdystream v0.5.1's Framer (`spdyclient vectors` in tests/fixtures;
# the interop test checks these are still what it writes). The header-carrying frames
# were compressed in this order by one compressor.
GO = {
    "data_fin": "000000010100000568656c6c6f",
    "goaway": "80030007000000080000000500000002",
    "headers_3": "800300080000001700000003828ab3e696e69464828b51862400000000ffff",
    "ping": "800300060000000400000007",
    "rst_cancel": "80030003000000080000000300000005",
    "settings": "80030004000000140000000201000007001000000000000400000064",
    "syn_reply_1": "800300020000000e000000016260606000000000ffff",
    "syn_stream_1": "80030001000000290000000100000000000078f9e3c6a7c2"
    "6260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff",
    "syn_stream_3": "800300010100001c00000003000000004000824ab114e41781738185818501000000ffff",
    "window_update": "80030009000000080000000100008000",
}
HEADER_ORDER = ("syn_stream_1", "syn_stream_3", "syn_reply_1", "headers_3")


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("data_fin", Data(1, b"hello", fin=True)),
        ("goaway", GoAway(5, frames.GoAwayStatus.INTERNAL_ERROR)),
        ("ping", Ping(7)),
        ("rst_cancel", RstStream(3, frames.RstStatus.CANCEL)),
        (
            "settings",
            Settings(
                (
                    Setting(frames.SettingId.INITIAL_WINDOW_SIZE, 1 << 20, flags=1),
                    Setting(frames.SettingId.MAX_CONCURRENT_STREAMS, 100),
                )
            ),
        ),
        ("window_update", WindowUpdate(1, 32768)),
    ],
)
def test_frames_without_headers_encode_to_the_bytes_spdystream_writes(name, frame):
    wire = bytes.fromhex(GO[name])
    assert encode(frame) == wire
    assert FrameParser().feed(wire) == [frame]


def test_frames_with_header_blocks_parse_from_spdystream_bytes():
    parser = FrameParser()
    parsed = [parser.feed(bytes.fromhex(GO[name]))[0] for name in HEADER_ORDER]
    first, third, reply, headers = parsed
    assert isinstance(first, SynStream)
    assert (first.stream_id, first.priority, first.fin) == (1, 0, False)
    assert isinstance(third, SynStream)
    assert (third.stream_id, third.priority, third.fin) == (3, 2, True)
    assert isinstance(reply, SynReply)
    assert reply.stream_id == 1
    assert isinstance(headers, HeadersFrame)
    assert headers.stream_id == 3
    # The first block of a connection opens the zlib stream: FDICT set, and the id of
    # the SPDY/3 dictionary (its Adler-32) follows.
    assert first.block[:6] == bytes.fromhex("78f9e3c6a7c2")


ROUND_TRIPS = [
    SynStream(5, b"\x01\x02", associated_id=3, priority=7, slot=1, fin=True, unidirectional=True),
    SynStream(frames.MAX_ID, b""),
    SynReply(2, b"block", fin=True),
    HeadersFrame(4, b"h"),
    RstStream(9, frames.RstStatus.FLOW_CONTROL_ERROR),
    RstStream(9, 99),  # a status this side does not know survives
    Settings((), clear=True),
    Ping(0xFFFFFFFF),
    GoAway(0),
    WindowUpdate(0, frames.MAX_ID),
    Data(3, b""),
    Data(3, bytes(range(256)) * 100, fin=False),
]


@pytest.mark.parametrize("frame", ROUND_TRIPS, ids=repr)
def test_every_frame_round_trips(frame):
    assert FrameParser().feed(encode(frame)) == [frame]


def test_the_parser_takes_input_in_any_pieces():
    wire = b"".join(encode(f) for f in ROUND_TRIPS)
    parser = FrameParser()
    got = []
    for i in range(len(wire)):
        got += parser.feed(wire[i : i + 1])
    assert got == ROUND_TRIPS
    assert parser.pending == 0


def test_pending_counts_the_bytes_of_an_incomplete_frame():
    parser = FrameParser()
    wire = encode(Data(1, b"abcdef"))
    assert parser.feed(wire[:5]) == []
    assert parser.pending == 5
    assert parser.feed(wire[5:] + wire[:9]) == [Data(1, b"abcdef")]
    assert parser.pending == 9


def test_an_unknown_control_frame_type_is_skipped():
    unknown = bytes.fromhex("8003000a00000003") + b"xyz"  # type 10 (CREDENTIAL in SPDY/3)
    assert FrameParser().feed(unknown + encode(Ping(1))) == [Ping(1)]


@pytest.mark.parametrize(
    ("wire", "words"),
    [
        (bytes.fromhex("8002000600000004") + b"\0\0\0\1", "version 2"),
        (bytes.fromhex("0000000000000001") + b"x", "stream 0"),
        (bytes.fromhex("8003000400000008") + b"\0\0\0\5\0\0\0\0", "SETTINGS"),
        (bytes.fromhex("8003000300000004") + b"\0\0\0\1", "RST_STREAM"),
        (bytes.fromhex("80030001000000020000"), "SYN_STREAM"),
    ],
)
def test_a_frame_that_breaks_the_protocol_raises(wire, words):
    with pytest.raises(StreamProtocolError, match=words):
        FrameParser().feed(wire)


def test_a_frame_over_the_limit_raises_before_it_is_buffered():
    parser = FrameParser(max_length=1024)
    with pytest.raises(StreamProtocolError, match="over the limit"):
        parser.feed(frames.data_head(1, 1025))


def test_encoding_refuses_what_the_wire_cannot_hold():
    with pytest.raises(ValueError, match="no DATA frame"):
        frames.data_head(0, 1)
    with pytest.raises(ValueError, match="no DATA frame"):
        frames.data_head(1, frames.MAX_LENGTH + 1)
