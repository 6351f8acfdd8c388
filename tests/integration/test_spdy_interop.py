"""vkpy's SPDY server against moby/spdystream, the Go implementation the apiserver and
kubectl use for streams to a kubelet: a small Go client (tests/fixtures/spdyclient),
built once and cached, drives a vkpy server on loopback."""

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_spdy_frames import GO
from vkpy.errors import StreamProtocolError
from vkpy.kubeletapi.spdy import RstStatus, SpdyConnection, SpdyStream, StreamWriterAdapter

SOURCE = Path(__file__).parents[1] / "fixtures" / "spdyclient"
CACHE = Path.home() / ".cache" / "vkpy" / "spdyclient"
PATTERN = bytes(range(251))


def go() -> str:
    found = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    assert found, "the interop test needs Go (on PATH or in /usr/local/go/bin)"
    return found


@pytest.fixture(scope="module")
def spdyclient() -> Path:
    """The Go client, built from the module cache (no network) once per source version."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    binary = CACHE / digest.hexdigest()[:16] / "spdyclient"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
        built = subprocess.run(
            [go(), "build", "-o", f"{binary}.tmp", "."],
            cwd=SOURCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert built.returncode == 0, built.stderr
        Path(f"{binary}.tmp").rename(binary)
    return binary


class Server:
    """A vkpy SPDY server whose streams do what their ``mode`` header says."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.held: list[SpdyStream] = []
        self.connections = 0
        self.ended_by_peer = 0
        self.errors: list[StreamProtocolError] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.connections += 1
        async with SpdyConnection(reader, StreamWriterAdapter(writer), server=True) as conn:
            while (stream := await conn.accept()) is not None:
                task = asyncio.create_task(self.stream(conn, stream))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            if conn.error is None and not conn.closed:
                self.ended_by_peer += 1  # its GOAWAY: accept ended, we were still open

    async def stream(self, conn: SpdyConnection, stream: SpdyStream) -> None:
        self.seen.append(dict(stream.headers))
        try:
            await self.serve(conn, stream, stream.headers.get("mode"))
        except StreamProtocolError as exc:
            self.errors.append(exc)

    async def serve(self, conn: SpdyConnection, stream: SpdyStream, mode: str | None) -> None:
        if mode == "echo":
            while chunk := await stream.read():
                await stream.write(chunk)
        elif mode == "upload":
            digest = hashlib.sha256()
            while chunk := await stream.read():
                digest.update(chunk)
            await stream.write(digest.hexdigest().encode())
        elif mode == "download":
            size = int(stream.headers["size"])
            await stream.write((PATTERN * (size // len(PATTERN) + 1))[:size])
        elif mode == "headers":
            await stream.write(json.dumps(stream.headers).encode())
        elif mode == "ping-me":
            await stream.write(f"{await conn.ping():.6f}".encode())
        elif mode == "reset":
            stream.reset()
            return
        elif mode == "hold":
            self.held.append(stream)
            while await stream.read():
                pass
            return
        elif mode == "goaway":
            await conn.close()
            return
        await stream.close()


async def test_spdystream_client_against_our_server(spdyclient, capsys):
    server = Server()
    listener = await asyncio.start_server(server.connection, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        process = await asyncio.create_subprocess_exec(
            str(spdyclient),
            "run",
            f"127.0.0.1:{port}",
            "16",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(120):
            out, err = await process.communicate()
    finally:
        listener.close()
        await listener.wait_closed()
    results = {r["check"]: r for r in map(json.loads, out.decode().splitlines())}
    failures = {name: r["error"] for name, r in results.items() if "error" in r}
    assert not failures, (failures, err.decode()[-2000:])
    assert process.returncode == 0, err.decode()[-2000:]
    expected = {"ping", "headers", "upload", "download", "reset", "server-ping", "goaway"}
    assert expected | {f"echo-{i}" for i in (0, 1, 2, 3, 9)} <= set(results)

    # Go's http.Header canonicalises names; SPDY carries them lowercase.
    assert json.loads(results["headers"]["seen"]) == {"mode": "headers", "x-multi": "ignored"}
    assert len(results["ping"]["rtts"]) == 3
    assert float(results["server-ping"]["rtt"]) > 0
    assert results["upload"]["bytes"] == results["download"]["bytes"] == 16 << 20
    # Go's Reset reached our stream; the client-goaway connection's stream too.
    assert [s.reset_status for s in server.held] == [RstStatus.CANCEL, RstStatus.CANCEL]
    assert results["reset"]["reset_stream"] == server.held[0].id
    assert results["goaway"]["closed"] and results["client-goaway"]["closed"]
    assert server.connections == 2
    assert server.errors == []
    assert server.ended_by_peer == 1
    echo_ids = sorted(int(s["index"]) for s in server.seen if s.get("mode") == "echo")
    assert echo_ids == [0, 1, 2, 3, 9]
    with capsys.disabled():
        rates = {n: round(results[n]["mib_per_s"]) for n in ("echo-9", "upload", "download")}
        print(f"\nspdystream <-> vkpy over loopback TCP, 16 MiB, MiB/s: {rates}")


def test_spdystream_still_writes_the_frames_the_unit_tests_know(spdyclient):
    written = subprocess.run(
        [str(spdyclient), "vectors"], capture_output=True, text=True, timeout=30, check=True
    )
    assert json.loads(written.stdout) == GO
