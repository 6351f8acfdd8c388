"""SPDY/3 name/value header blocks and their zlib compression.

A block is a 32-bit pair count, then for each pair a 32-bit length and the lowercase
name, a 32-bit length and the value; a header with several values carries them joined by
NUL. Each direction of a connection is one zlib stream, primed with the dictionary of
the SPDY/3 draft (section 2.6.10.1) and flushed with Z_SYNC_FLUSH after every block, so
one compressor and one decompressor live as long as the connection and see every
block in wire order.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence

from vkpy.errors import StreamProtocolError

Headers = dict[str, str]
"""Lowercase name -> value; several values of one name are joined by NUL ("\\x00")."""

# The dictionary is the draft's: 65 length-prefixed words, then a run of common values.
_WORDS = (  # split in _dictionary
    "options head post put delete trace accept accept-charset accept-encoding "
    "accept-language accept-ranges age allow authorization cache-control connection "
    "content-base content-encoding content-language content-length content-location "
    "content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning "
    "www-authenticate method get status 200|OK version HTTP/1.1 url public set-cookie "
    "keep-alive origin"
)
_STATUS_CODES = (
    "100 101 201 202 205 206 300 302 303 304 305 306 307 402 405 406 407 408 409 410 411 "
    "412 413 414 415 416 417 502 504 505"
)
_TAIL = (
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    "application/xhtml+xml,text/plain,text/javascript,",
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
)


def _dictionary() -> bytes:
    words = (w.replace("|", " ").encode() for w in _WORDS.split())  # "|" stands for a space
    prefixed = b"".join(struct.pack(">I", len(w)) + w for w in words)
    return prefixed + _STATUS_CODES.replace(" ", "").encode() + "".join(_TAIL).encode()


DICTIONARY = _dictionary()
MAX_BLOCK = 1 << 20
"""The largest decompressed block accepted: bounds what a peer can make us allocate."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def normal(headers: Mapping[str, str | Sequence[str]]) -> Headers:
    """``headers`` as they go on the wire: names lowercased, a list of values joined by
    NUL. Raises ValueError for an empty name or one given twice."""
    result: Headers = {}
    for name, value in headers.items():
        lower = name.lower()
        if not lower or lower in result:
            raise ValueError(f"header name {name!r} is empty or given twice")
        result[lower] = value if isinstance(value, str) else "\x00".join(value)
    return result


def encode_block(headers: Mapping[str, str | Sequence[str]]) -> bytes:
    """The uncompressed block of `normal` ``headers``."""
    pairs = normal(headers)
    parts = [struct.pack(">I", len(pairs))]
    for name, value in pairs.items():
        for field in (_raw(name), _raw(value)):
            parts.append(struct.pack(">I", len(field)))
            parts.append(field)
    return b"".join(parts)


def decode_block(raw: bytes) -> Headers:
    """Parse an uncompressed block; raises StreamProtocolError for a malformed one."""
    view = memoryview(raw)
    try:
        (count,) = struct.unpack_from(">I", view)
        offset = 4
        headers: Headers = {}
        for _ in range(count):
            fields = []
            for _ in range(2):
                (size,) = struct.unpack_from(">I", view, offset)
                offset += 4
                if offset + size > len(view):
                    raise StreamProtocolError("SPDY header block: a field runs past its end")
                fields.append(_text(bytes(view[offset : offset + size])))
                offset += size
            name, value = fields
            if not name or name != name.lower() or name in headers:
                raise StreamProtocolError(f"SPDY header block: bad or repeated name {name!r}")
            headers[name] = value
    except struct.error as exc:
        raise StreamProtocolError("SPDY header block: truncated") from exc
    if offset != len(view):
        raise StreamProtocolError("SPDY header block: bytes after the last header")
    return headers


def header_values(value: str) -> list[str]:
    """The separate values of one header as `decode_block` gives it."""
    return value.split("\x00")


class HeaderCompressor:
    """Compresses the blocks of one direction of a connection, in wire order."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, zdict=DICTIONARY)

    def compress(self, headers: Mapping[str, str | Sequence[str]]) -> bytes:
        return self._zlib.compress(encode_block(headers)) + self._zlib.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """Decompresses the blocks the peer sent, in wire order (the zlib state carries over
    from block to block, so a block dropped here would break every later one)."""

    def __init__(self, *, limit: int = MAX_BLOCK) -> None:
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS, zdict=DICTIONARY)
        self._limit = limit

    def decompress(self, block: bytes) -> Headers:
        if not block:
            return {}
        try:
            raw = self._zlib.decompress(block, self._limit + 1)
        except zlib.error as exc:
            raise StreamProtocolError(f"SPDY header block does not inflate: {exc}") from exc
        if len(raw) > self._limit or self._zlib.unconsumed_tail:
            raise StreamProtocolError(f"SPDY header block over {self._limit} bytes")
        return decode_block(raw)
