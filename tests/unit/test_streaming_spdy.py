"""Exec and port-forward over SPDY/3.1 through aiohttp's upgraded connection, with
vkpy's own SPDY client on the other side and real local processes behind."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestServer

from tests.unit.localprocess import UID, LocalBackend, routes_for, serve
from vkpy.kubeletapi.spdy.connection import SpdyConnection
from vkpy.kubeletapi.spdy.stream import SpdyStream
from vkpy.kubeletapi.spdy.transport import StreamWriterAdapter
from vkpy.kubeletapi.streaming.upgrade import RawFeed


@pytest.fixture
def backend() -> LocalBackend:
    return LocalBackend(UID)


@pytest.fixture
async def server(backend: LocalBackend) -> AsyncIterator[TestServer]:
    server = await serve(routes_for(backend, stream_creation_timeout=2))
    yield server
    await server.close()


async def upgrade(
    server: TestServer, path: str, versions: list[str]
) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {server.host}",
        "Connection: Upgrade",
        "Upgrade: SPDY/3.1",
    ]
    lines += [f"X-Stream-Protocol-Version: {v}" for v in versions]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status = int(head.split()[1])
    headers = {}
    for line in head.split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers, reader, writer


async def read_all(stream: SpdyStream) -> bytes:
    data = b""
    while chunk := await stream.read():
        data += chunk
    return data


def exec_path(*command: str, stdin: bool = False) -> str:
    query = urlencode([("command", c) for c in command]) + "&output=1&error=1"
    return f"/exec/ns/p/c?{query}" + ("&input=1" if stdin else "")


async def test_v4_exec_over_spdy(server):
    status, headers, reader, writer = await upgrade(
        server,
        exec_path("sh", "-c", "echo out; echo err >&2; exit 3"),
        ["v4.channel.k8s.io", "v3.channel.k8s.io"],
    )
    assert status == 101 and headers["x-stream-protocol-version"] == "v4.channel.k8s.io"
    async with SpdyConnection(reader, StreamWriterAdapter(writer), server=False) as client:
        error = await client.open_stream({"streamType": "error"})
        out = await client.open_stream({"streamType": "stdout"})
        err = await client.open_stream({"streamType": "stderr"})
        got = await asyncio.gather(read_all(out), read_all(err), read_all(error))
    assert got[0] == b"out\n" and got[1] == b"err\n"
    assert json.loads(got[2])["details"]["causes"][0]["message"] == "3"


async def test_stdin_over_spdy_arrives_whole(server):
    payload = os.urandom(5 * 1024 * 1024)
    _, _, reader, writer = await upgrade(
        server, exec_path("sha256sum", stdin=True), ["v4.channel.k8s.io"]
    )
    async with SpdyConnection(reader, StreamWriterAdapter(writer), server=False) as client:
        error = await client.open_stream({"streamType": "error"})
        stdin = await client.open_stream({"streamType": "stdin"})
        out = await client.open_stream({"streamType": "stdout"})
        await client.open_stream({"streamType": "stderr"})
        await stdin.write(payload)
        await stdin.close()
        digest, status = await asyncio.gather(read_all(out), read_all(error))
    assert digest.split()[0].decode() == hashlib.sha256(payload).hexdigest()
    assert json.loads(status)["status"] == "Success"


async def test_v2_reports_failure_as_text(server):
    _, headers, reader, writer = await upgrade(
        server, exec_path("sh", "-c", "exit 4"), ["v2.channel.k8s.io"]
    )
    assert headers["x-stream-protocol-version"] == "v2.channel.k8s.io"
    async with SpdyConnection(reader, StreamWriterAdapter(writer), server=False) as client:
        error = await client.open_stream({"streamType": "error"})
        await client.open_stream({"streamType": "stdout"})
        await client.open_stream({"streamType": "stderr"})
        text = await read_all(error)
    assert text.startswith(b"command terminated with non-zero exit code") and b"exit code 4" in text


async def test_unknown_versions_are_forbidden(server):
    status, _, _, writer = await upgrade(server, exec_path("true"), ["v9.channel.k8s.io"])
    writer.close()
    assert status == 403


async def test_missing_streams_time_out_and_kill_the_process(server, backend):
    _, _, reader, writer = await upgrade(server, exec_path("sleep", "60"), ["v4.channel.k8s.io"])
    async with SpdyConnection(reader, StreamWriterAdapter(writer), server=False) as client:
        await client.open_stream({"streamType": "error"})
        await asyncio.sleep(2.5)
    assert backend.processes[0].process.returncode == -9


async def test_port_forward_pairs_streams_by_request_id(server):
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(await r.read())  # everything, once the client half-closed
        await w.drain()
        w.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = str(target.sockets[0].getsockname()[1])
    _, headers, reader, writer = await upgrade(server, "/portForward/ns/p", ["portforward.k8s.io"])
    assert headers["x-stream-protocol-version"] == "portforward.k8s.io"
    payload = os.urandom(3 * 1024 * 1024)
    async with SpdyConnection(reader, StreamWriterAdapter(writer), server=False) as client:
        results = []
        for request in ("0", "1"):
            await client.open_stream({"streamType": "error", "port": port, "requestID": request})
            data = await client.open_stream(
                {"streamType": "data", "port": port, "requestID": request}
            )
            await data.write(payload)
            await data.close()
            results.append(await read_all(data))
    assert results == [payload, payload]
    target.close()


async def test_port_forward_to_a_closed_port_says_so_on_the_error_stream(server):
    _, _, reader, writer = await upgrade(server, "/portForward/ns/p", ["portforward.k8s.io"])
    async with SpdyConnection(reader, StreamWriterAdapter(writer), server=False) as client:
        error = await client.open_stream({"streamType": "error", "port": "1", "requestID": "0"})
        await client.open_stream({"streamType": "data", "port": "1", "requestID": "0"})
        text = await read_all(error)
    assert text.startswith(b"error forwarding port 1 to pod p")


class Transport(asyncio.ReadTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False


async def test_the_raw_feed_pauses_the_socket_while_its_buffer_is_full():
    transport = Transport()
    feed = RawFeed(transport, limit=10)
    feed.feed_data(b"x" * 8)
    assert not transport.paused
    feed.feed_data(b"y" * 8)
    assert transport.paused
    assert await feed.read(4) == b"xxxx"
    assert transport.paused  # 12 left: still over half the limit
    assert await feed.read(100) == b"xxxx" + b"y" * 8
    assert not transport.paused
    feed.feed_eof()
    assert await feed.read(1) == b""
