"""The channel framing of Kubernetes' WebSocket protocols, as pure functions.

Each message starts with its channel: a byte, or an ASCII digit in the base64 forms
whose payload is base64 text. Exec and attach use 0 stdin, 1 stdout, 2 stderr,
3 error, 4 resize; port-forward two channels per port. ``v5.channel.k8s.io`` adds the
message ``[255, channel]``: the client closed that channel (stdin EOF).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vkpy.remote import TerminalSize

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255


@dataclass(frozen=True)
class ChannelProtocol:
    name: str
    base64: bool = False
    structured_status: bool = False  # the error channel carries a metav1.Status
    stream_close: bool = False  # [255, channel] closes a channel


V1 = ChannelProtocol("channel.k8s.io")
V5 = ChannelProtocol("v5.channel.k8s.io", structured_status=True, stream_close=True)
EXEC_PROTOCOLS = (
    V5,
    ChannelProtocol("v4.channel.k8s.io", structured_status=True),
    ChannelProtocol("v4.base64.channel.k8s.io", base64=True, structured_status=True),
    V1,
    ChannelProtocol("base64.channel.k8s.io", base64=True),
)
FORWARD_PROTOCOLS = (
    ChannelProtocol("v4.channel.k8s.io"),
    ChannelProtocol("v4.base64.channel.k8s.io", base64=True),
)
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"


def negotiate(
    offered: Sequence[str], supported: Sequence[ChannelProtocol]
) -> ChannelProtocol | None:
    """The first protocol the client offers that is supported, in the client's order;
    a client offering none gets plain ``channel.k8s.io``, as from the kubelet."""
    if not offered:
        return V1
    by_name = {p.name: p for p in supported}
    return next((by_name[name] for name in offered if name in by_name), None)


def offered_protocols(header: str) -> list[str]:
    """The protocols of a ``Sec-WebSocket-Protocol`` header, in order."""
    return [p.strip() for p in header.split(",") if p.strip()]


def encode(protocol: ChannelProtocol, channel: int, data: bytes) -> bytes | str:
    """One message for ``channel``: bytes, or text for the base64 forms."""
    if protocol.base64:
        return chr(ord("0") + channel) + base64.b64encode(data).decode("ascii")
    return bytes((channel,)) + data


@dataclass(frozen=True)
class Data:
    channel: int
    data: bytes


@dataclass(frozen=True)
class Closed:
    channel: int


def decode(protocol: ChannelProtocol, message: bytes | str) -> Data | Closed | None:
    """What a client's message says; None for an empty or malformed one (ignored, as
    the kubelet ignores them)."""
    raw = message.encode("latin-1") if isinstance(message, str) else message
    if not raw:
        return None
    if protocol.stream_close and raw[0] == CLOSE_SIGNAL:
        return Closed(raw[1]) if len(raw) == 2 else None
    if protocol.base64:
        try:
            return Data(raw[0] - ord("0"), base64.b64decode(raw[1:], validate=False))
        except (binascii.Error, ValueError):
            return None
    return Data(raw[0], raw[1:])


class SizeDecoder:
    """Terminal sizes from a resize stream: JSON objects ``{"Width": w, "Height": h}``,
    one after another, split across reads anywhere."""

    def __init__(self) -> None:
        self._buffer = ""
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> Iterator[TerminalSize]:
        self._buffer += data.decode("utf-8", "replace")
        while self._buffer.strip():
            text = self._buffer.lstrip()
            try:
                value, end = self._json.raw_decode(text)
            except json.JSONDecodeError:
                self._buffer = text
                return
            self._buffer = text[end:]
            if isinstance(value, dict):
                width, height = value.get("Width"), value.get("Height")
                if isinstance(width, int) and isinstance(height, int):
                    yield TerminalSize(width=width, height=height)
