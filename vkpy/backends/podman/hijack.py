"""A hijacked HTTP connection to Podman: one request, then the socket is the stream.

Podman's exec start and attach answer ``101 UPGRADED`` (we ask with ``Upgrade: tcp``)
and from then on the connection carries the process's stdio both ways: stdin in raw,
output multiplexed in `api.FrameDecoder` frames unless there is a terminal. aiohttp's
client never hands its socket over, so this is a plain asyncio unix connection with a
hand-written request. Podman 4.3 honours a half-close: our write side shut down is EOF
on the process's stdin, while its output keeps coming.

The request and the answer's head are pure functions (`request_bytes`, `parse_head`);
`hijack` is the thin I/O around them, and maps failures as `api` does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from vkpy.backends.podman.api import API_VERSION, message_of
from vkpy.errors import BackendError, BackendUnavailable, ContainerNotRunning, PodNotFound
from vkpy.jsontypes import JSON

HEAD_LIMIT = 64 * 1024
BODY_LIMIT = 64 * 1024
HANDED_OVER = (101, 200)  # 200 from servers that ignore the Upgrade header
STATE_IMPROPER = "container state improper"  # Podman's cause for "not running"


@dataclass(frozen=True)
class Head:
    status: int
    reason: str
    headers: Mapping[str, str]  # names in lower case


def request_bytes(
    method: str, path: str, *, params: Mapping[str, str] | None = None, body: JSON | None = None
) -> bytes:
    """An HTTP/1.1 request for ``/v4.0.0/libpod{path}`` asking for the connection."""
    target = f"/{API_VERSION}/libpod{path}"
    if params:
        target += "?" + urlencode(params)
    data = json.dumps(body).encode() if body is not None else b""
    head = (
        f"{method} {target} HTTP/1.1\r\n"
        "Host: podman\r\n"
        "Connection: Upgrade\r\n"
        "Upgrade: tcp\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + data


def parse_head(raw: bytes) -> Head:
    """The status line and headers of an answer (``raw`` ends with the blank line)."""
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdecimal():
        raise BackendError(f"Podman answered something that is not HTTP: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return Head(int(code), reason, headers)


def failure(op: str, status: int, body: bytes) -> BackendError:
    """The error for a refused request, by what the caller does with it."""
    text = message_of(body)
    if status == 404:
        return PodNotFound(f"podman {op}: {text}")
    if STATE_IMPROPER in text:
        return ContainerNotRunning(f"podman {op}: {text}")
    return BackendError(f"podman {op}: HTTP {status}: {text}")


async def _body(reader: asyncio.StreamReader, head: Head) -> bytes:
    length = head.headers.get("content-length", "")
    if length.isdecimal():
        return await reader.readexactly(min(int(length), BODY_LIMIT))
    return await reader.read(BODY_LIMIT)  # Podman closes after an error without a length


async def _exchange(
    socket: str, request: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Head, bytes]:
    reader, writer = await asyncio.open_unix_connection(socket, limit=HEAD_LIMIT)
    try:
        writer.write(request)
        await writer.drain()
        head = parse_head(await reader.readuntil(b"\r\n\r\n"))
        body = b"" if head.status in HANDED_OVER else await _body(reader, head)
    except BaseException:
        writer.close()
        raise
    return reader, writer, head, body


async def hijack(
    socket: str,
    op: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    body: JSON | None = None,
    timeout: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """POST ``path`` and return the connection once Podman handed it over."""
    request = request_bytes("POST", path, params=params, body=body)
    try:
        async with asyncio.timeout(timeout):
            reader, writer, head, error = await _exchange(socket, request)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise BackendUnavailable(f"podman {op}: {str(exc) or type(exc).__name__}") from exc
    except asyncio.LimitOverrunError as exc:
        raise BackendError(f"podman {op}: the answer's head is too long") from exc
    if head.status not in HANDED_OVER:
        writer.close()
        raise failure(op, head.status, error)
    return reader, writer
