"""SPDY/3.1, as the Kubernetes apiserver and kubectl speak it to a kubelet (through
moby/spdystream): frames, header blocks, streams over one connection.

`SpdyConnection` runs over any byte transport (`ByteReader`, `ByteWriter`); the kubelet
API serves exec, attach and port-forward over the streams it accepts.
"""

from vkpy.kubeletapi.spdy.connection import SpdyConnection
from vkpy.kubeletapi.spdy.frames import GoAwayStatus, RstStatus
from vkpy.kubeletapi.spdy.headers import Headers, header_values
from vkpy.kubeletapi.spdy.stream import SpdyStream
from vkpy.kubeletapi.spdy.transport import ByteReader, ByteWriter, StreamWriterAdapter

__all__ = [
    "ByteReader",
    "ByteWriter",
    "GoAwayStatus",
    "Headers",
    "RstStatus",
    "SpdyConnection",
    "SpdyStream",
    "StreamWriterAdapter",
    "header_values",
]
