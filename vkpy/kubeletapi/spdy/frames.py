"""SPDY/3.1 frames: typed values, their encoding, and an incremental parser.

Every frame has an 8-byte head. A control frame: the control bit, the version (3) and
the type; then 8 bits of flags and a 24-bit payload length. A DATA frame: a 31-bit
stream id; then flags and length the same way. Header blocks stay compressed here
(``block``): their zlib state is the connection's (see `headers`), so decompressing
them is the caller's job, in the order the parser yields them.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from vkpy.errors import StreamProtocolError

VERSION = 3
MAX_LENGTH = (1 << 24) - 1
"""The largest payload a 24-bit length field holds."""
MAX_ID = (1 << 31) - 1
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_CLEAR_SETTINGS = 0x01
_CONTROL = 0x8000_0000
_HEAD = struct.Struct(">II")
_TWO = struct.Struct(">II")


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class SettingId(enum.IntEnum):
    UPLOAD_BANDWIDTH = 1
    DOWNLOAD_BANDWIDTH = 2
    ROUND_TRIP_TIME = 3
    MAX_CONCURRENT_STREAMS = 4
    CURRENT_CWND = 5
    DOWNLOAD_RETRANS_RATE = 6
    INITIAL_WINDOW_SIZE = 7
    CLIENT_CERTIFICATE_VECTOR_SIZE = 8


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    block: bytes
    associated_id: int = 0
    priority: int = 0  # 0 (highest) to 7
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    block: bytes
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int  # an RstStatus, or a code this module does not know


@dataclass(frozen=True)
class Setting:
    id: int  # a SettingId, or one this module does not know
    value: int
    flags: int = 0


@dataclass(frozen=True)
class Settings:
    entries: tuple[Setting, ...] = ()
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    block: bytes
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int  # 0: the session's window
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


Frame = (
    SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data
)


def _control(kind: FrameType, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"{kind.name} payload of {len(payload)} bytes is over the limit")
    return _HEAD.pack(_CONTROL | VERSION << 16 | kind, flags << 24 | len(payload)) + payload


def data_head(stream_id: int, length: int, *, fin: bool = False) -> bytes:
    """The 8 bytes before a DATA payload (the payload can then go out without a copy)."""
    if not 0 < stream_id <= MAX_ID or length > MAX_LENGTH:
        raise ValueError(f"no DATA frame for stream {stream_id} with {length} bytes")
    return _HEAD.pack(stream_id, (FLAG_FIN if fin else 0) << 24 | length)


def encode(frame: Frame) -> bytes:
    """The wire bytes of ``frame``."""
    match frame:
        case Data(stream_id, data, fin):
            return data_head(stream_id, len(data), fin=fin) + data
        case SynStream():
            flags = (FLAG_FIN if frame.fin else 0) | (
                FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
            )
            fixed = struct.pack(
                ">IIBB", frame.stream_id, frame.associated_id, frame.priority << 5, frame.slot
            )
            return _control(FrameType.SYN_STREAM, flags, fixed + frame.block)
        case SynReply(stream_id, block, fin):
            return _control(FrameType.SYN_REPLY, FLAG_FIN if fin else 0, _id(stream_id) + block)
        case HeadersFrame(stream_id, block, fin):
            return _control(FrameType.HEADERS, FLAG_FIN if fin else 0, _id(stream_id) + block)
        case RstStream(stream_id, status):
            return _control(FrameType.RST_STREAM, 0, _TWO.pack(stream_id, status))
        case Settings(entries, clear):
            body = b"".join(struct.pack(">II", e.flags << 24 | e.id, e.value) for e in entries)
            flags = FLAG_CLEAR_SETTINGS if clear else 0
            return _control(FrameType.SETTINGS, flags, struct.pack(">I", len(entries)) + body)
        case Ping(ping_id):
            return _control(FrameType.PING, 0, struct.pack(">I", ping_id))
        case GoAway(last_good_id, status):
            return _control(FrameType.GOAWAY, 0, _TWO.pack(last_good_id, status))
        case WindowUpdate(stream_id, delta):
            return _control(FrameType.WINDOW_UPDATE, 0, _TWO.pack(stream_id, delta))
    raise TypeError(f"not a SPDY frame: {frame!r}")


def _id(stream_id: int) -> bytes:
    return struct.pack(">I", stream_id)


def _need(payload: bytes, size: int, kind: FrameType) -> None:
    if len(payload) < size:
        raise StreamProtocolError(f"SPDY {kind.name} frame of {len(payload)} bytes is short")


def decode_control(kind: int, flags: int, payload: bytes) -> Frame | None:
    """One control frame from its type, flags and payload; None for a type SPDY/3.1
    does not define (the draft says to ignore those)."""
    if kind not in FrameType._value2member_map_:
        return None
    kind = FrameType(kind)
    fin = bool(flags & FLAG_FIN)
    if kind is FrameType.SYN_STREAM:
        _need(payload, 10, kind)
        stream_id, associated, priority, slot = struct.unpack_from(">IIBB", payload)
        return SynStream(
            stream_id & MAX_ID,
            payload[10:],
            associated_id=associated & MAX_ID,
            priority=priority >> 5,
            slot=slot,
            fin=fin,
            unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
        )
    if kind in (FrameType.SYN_REPLY, FrameType.HEADERS):
        _need(payload, 4, kind)
        (stream_id,) = struct.unpack_from(">I", payload)
        cls = SynReply if kind is FrameType.SYN_REPLY else HeadersFrame
        return cls(stream_id & MAX_ID, payload[4:], fin=fin)
    if kind is FrameType.SETTINGS:
        _need(payload, 4, kind)
        (count,) = struct.unpack_from(">I", payload)
        if len(payload) != 4 + 8 * count:
            raise StreamProtocolError(f"SPDY SETTINGS frame with {count} entries is malformed")
        pairs = (struct.unpack_from(">II", payload, 4 + 8 * i) for i in range(count))
        entries = tuple(Setting(key & 0xFFFFFF, value, key >> 24) for key, value in pairs)
        return Settings(entries, clear=bool(flags & FLAG_CLEAR_SETTINGS))
    if kind is FrameType.PING:
        _need(payload, 4, kind)
        return Ping(struct.unpack_from(">I", payload)[0])
    _need(payload, 8, kind)
    first, second = _TWO.unpack_from(payload)
    if kind is FrameType.RST_STREAM:
        return RstStream(first & MAX_ID, second)
    if kind is FrameType.GOAWAY:
        return GoAway(first & MAX_ID, second)
    return WindowUpdate(first & MAX_ID, second & MAX_ID)


class FrameParser:
    """Takes the bytes of a connection as they come, in any pieces, and gives its frames.

    ``max_length`` bounds a frame's payload (and so what a peer can make us buffer);
    ``pending`` is the count of bytes of a frame not complete yet, so a caller can tell
    a clean end of the connection from one in the middle of a frame.
    """

    def __init__(self, *, max_length: int = MAX_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_length = max_length

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completes, in order; raises StreamProtocolError for a
        frame that breaks the protocol (the connection cannot go on after one)."""
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        try:
            while len(buffer) - offset >= _HEAD.size:
                first, second = _HEAD.unpack_from(buffer, offset)
                length = second & MAX_LENGTH
                if length > self._max_length:
                    raise StreamProtocolError(f"SPDY frame of {length} bytes is over the limit")
                end = offset + _HEAD.size + length
                if len(buffer) < end:
                    break
                payload = bytes(buffer[offset + _HEAD.size : end])
                offset = end
                frame = self._frame(first, second >> 24, payload)
                if frame is not None:
                    frames.append(frame)
        finally:
            del buffer[:offset]
        return frames

    @staticmethod
    def _frame(first: int, flags: int, payload: bytes) -> Frame | None:
        if not first & _CONTROL:
            if first == 0:
                raise StreamProtocolError("SPDY DATA frame for stream 0")
            return Data(first, payload, fin=bool(flags & FLAG_FIN))
        version = first >> 16 & 0x7FFF
        if version != VERSION:
            raise StreamProtocolError(f"SPDY version {version} frame; only 3 is spoken")
        return decode_control(first & 0xFFFF, flags, payload)
