"""Exec and port-forward over the kubelet's WebSocket protocols, against real local
processes and sockets (the backend side is `localprocess`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.unit.localprocess import UID, LocalBackend, routes_for, serve


@pytest.fixture
def backend() -> LocalBackend:
    return LocalBackend(UID)


@pytest.fixture
async def server(backend: LocalBackend) -> AsyncIterator[TestServer]:
    server = await serve(routes_for(backend, max_streaming_sessions=2))
    yield server
    await server.close()


def exec_path(*command: str, stdin: bool = False, tty: bool = False) -> str:
    query = urlencode([("command", c) for c in command])
    query += "&output=1" + ("&tty=1" if tty else "&error=1") + ("&input=1" if stdin else "")
    return f"/exec/ns/p/c?{query}"


async def collect(ws: aiohttp.ClientWebSocketResponse, *, base64: bool = False) -> dict[int, bytes]:
    got: dict[int, bytes] = {}
    async for message in ws:
        if message.type == aiohttp.WSMsgType.BINARY:
            channel, data = message.data[0], message.data[1:]
        elif message.type == aiohttp.WSMsgType.TEXT:
            import base64 as b64

            channel, data = int(message.data[0]), b64.b64decode(message.data[1:])
        else:
            break
        got[channel] = got.get(channel, b"") + data
    return got


async def test_v5_exec_keeps_stdout_and_stderr_apart_and_reports_the_exit_code(server):
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            server.make_url(exec_path("sh", "-c", "echo out; echo err >&2; exit 3")),
            protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"),
        ) as ws,
    ):
        assert ws.protocol == "v5.channel.k8s.io"
        got = await collect(ws)
    assert got[1] == b"out\n" and got[2] == b"err\n"
    status = json.loads(got[3])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert "exit code 3" in status["message"]


async def test_v4_success_is_a_success_status(server):
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.make_url(exec_path("true")), protocols=("v4.channel.k8s.io",)) as ws,
    ):
        got = await collect(ws)
    assert json.loads(got[3])["status"] == "Success"


async def test_v1_base64_sends_only_the_failure_message(server):
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            server.make_url(exec_path("sh", "-c", "echo hi; exit 2")),
            protocols=("base64.channel.k8s.io",),
        ) as ws,
    ):
        got = await collect(ws, base64=True)
    assert got[1] == b"hi\n"
    assert got[3].startswith(b"command terminated with non-zero exit code")


async def test_v5_stdin_arrives_whole_and_its_close_is_eof(server):
    payload = os.urandom(5 * 1024 * 1024)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            server.make_url(exec_path("sha256sum", stdin=True)), protocols=("v5.channel.k8s.io",)
        ) as ws,
    ):
        for start in range(0, len(payload), 32 * 1024):
            await ws.send_bytes(b"\x00" + payload[start : start + 32 * 1024])
        await ws.send_bytes(bytes([255, 0]))
        got = await collect(ws)
    assert got[1].split()[0].decode() == hashlib.sha256(payload).hexdigest()
    assert json.loads(got[3])["status"] == "Success"


async def test_resizes_reach_the_process(server, backend):
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            server.make_url(exec_path("sleep", "0.5", tty=True)), protocols=("v4.channel.k8s.io",)
        ) as ws,
    ):
        await ws.send_bytes(b"\x04" + b'{"Width":100,"Height":40}')
        await collect(ws)
    sizes = backend.processes[0].sizes
    assert [(s.width, s.height) for s in sizes] == [(100, 40)]
    assert backend.requests[0].tty and not backend.requests[0].stderr


async def test_a_client_that_goes_away_kills_the_process(server, backend):
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            server.make_url(exec_path("sleep", "60")), protocols=("v5.channel.k8s.io",)
        ) as ws,
    ):
        first = await ws.receive()
        assert first.data == b"\x01"  # ready: an empty stdout message
    for _ in range(100):
        if backend.processes and backend.processes[0].process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    assert backend.processes[0].process.returncode == -9


@pytest.mark.parametrize(
    ("path", "protocols", "status"),
    [
        (exec_path("true"), ("v9.channel.k8s.io",), 400),
        ("/exec/ns/p/c?command=true", ("v5.channel.k8s.io",), 400),  # no stream asked for
        ("/exec/ns/nope/c?command=true&output=1", ("v5.channel.k8s.io",), 404),
        ("/exec/ns/p/other?command=true&output=1", ("v5.channel.k8s.io",), 404),
        ("/attach/ns/p/c?output=1", ("v5.channel.k8s.io",), 501),  # no attacher
    ],
)
async def test_refusals_come_before_the_upgrade(server, path, protocols, status):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(server.make_url(path), protocols=protocols)
    assert caught.value.status == status


async def test_sessions_beyond_the_cap_get_429(server):
    async with aiohttp.ClientSession() as http:
        url = server.make_url(exec_path("sleep", "5"))
        first = await http.ws_connect(url, protocols=("v5.channel.k8s.io",))
        second = await http.ws_connect(url, protocols=("v5.channel.k8s.io",))
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(url, protocols=("v5.channel.k8s.io",))
        assert caught.value.status == 429
        await first.close()
        await second.close()


async def test_websocket_port_forward_channels_carry_a_tcp_exchange(server):
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            server.make_url(f"/portForward/ns/p?port={port}"), protocols=("v4.channel.k8s.io",)
        ) as ws,
    ):
        opening = [await ws.receive_bytes(), await ws.receive_bytes()]
        assert opening == [b"\x00" + struct.pack("<H", port), b"\x01" + struct.pack("<H", port)]
        await ws.send_bytes(b"\x00hello\n")
        assert await ws.receive_bytes() == b"\x00HELLO\n"
    target.close()
