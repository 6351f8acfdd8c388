"""SPDY/3 header blocks: the dictionary, the block format, the per-connection zlib stream."""

import struct
import zlib

import pytest

from tests.unit.test_spdy_frames import GO, HEADER_ORDER
from vkpy.errors import StreamProtocolError
from vkpy.kubeletapi.spdy.frames import FrameParser
from vkpy.kubeletapi.spdy.headers import (
    DICTIONARY,
    HeaderCompressor,
    HeaderDecompressor,
    decode_block,
    encode_block,
    header_values,
)


def test_the_dictionary_is_the_spdy3_one():
    # 1423 bytes, Adler-32 0xe3c6a7c2: the dictionary id spdystream's zlib streams carry.
    assert len(DICTIONARY) == 1423
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2
    assert DICTIONARY.startswith(b"\0\0\0\x07options\0\0\0\x04head")
    assert DICTIONARY.endswith(b"utf-,*,enq=0.")


def test_blocks_spdystream_compressed_decompress_in_order():
    parser = FrameParser()
    inflate = HeaderDecompressor()
    seen = [inflate.decompress(parser.feed(bytes.fromhex(GO[n]))[0].block) for n in HEADER_ORDER]
    # Go canonicalises "streamType" to "Streamtype"; the wire has it lowercase.
    assert seen == [{"streamtype": "error"}, {"port": "8080"}, {}, {"multi": "a\x00b"}]
    assert header_values(seen[3]["multi"]) == ["a", "b"]


def test_a_block_out_of_order_does_not_decompress():
    parser = FrameParser()
    later = parser.feed(bytes.fromhex(GO["syn_stream_3"]))[0]
    with pytest.raises(StreamProtocolError, match="inflate"):
        HeaderDecompressor().decompress(later.block)


def test_the_block_format_is_count_then_length_prefixed_pairs():
    raw = encode_block({"Port": "80", "multi": ["a", "b"]})
    assert raw == (
        struct.pack(">I", 2)
        + struct.pack(">I", 4)
        + b"port"
        + struct.pack(">I", 2)
        + b"80"
        + struct.pack(">I", 5)
        + b"multi"
        + struct.pack(">I", 3)
        + b"a\0b"
    )
    assert decode_block(raw) == {"port": "80", "multi": "a\0b"}


def test_our_compressed_blocks_round_trip_and_share_one_stream():
    deflate, inflate = HeaderCompressor(), HeaderDecompressor()
    headers = [{"streamType": "data", "port": "8080"}, {"streamtype": "error"}, {}, {"é": "ü"}]
    blocks = [deflate.compress(h) for h in headers]
    assert blocks[0][:6] == bytes.fromhex("78f9e3c6a7c2")  # as spdystream's first block
    assert len(blocks[1]) < len(encode_block(headers[1]))  # the stream remembers "stream"
    assert [inflate.decompress(b) for b in blocks] == [
        {"streamtype": "data", "port": "8080"},
        {"streamtype": "error"},
        {},
        {"é": "ü"},
    ]


def test_a_block_inflating_past_the_limit_is_refused():
    inflate = HeaderDecompressor(limit=1000)
    block = HeaderCompressor().compress({"big": "x" * 5000})
    with pytest.raises(StreamProtocolError, match="over 1000 bytes"):
        inflate.decompress(block)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"\0\0", "truncated"),
        (struct.pack(">II", 1, 10) + b"abc", "runs past"),
        (encode_block({"a": "1"}) + b"!", "after the last"),
        (struct.pack(">II", 1, 0) + struct.pack(">I", 0), "bad or repeated"),
        (struct.pack(">II", 1, 1) + b"A" + struct.pack(">I", 0), "bad or repeated"),
        (struct.pack(">I", 2) + (struct.pack(">I", 1) + b"a" + b"\0" * 4) * 2, "repeated"),
    ],
)
def test_a_malformed_block_raises(raw, words):
    with pytest.raises(StreamProtocolError, match=words):
        decode_block(raw)


def test_encoding_refuses_a_name_given_twice():
    with pytest.raises(ValueError, match="twice"):
        encode_block({"Port": "1", "port": "2"})
