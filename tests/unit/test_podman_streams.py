"""The Podman backend's exec and attach wire: the hijack request, its failures against a
real unix-socket server, and the Session's stream handling."""

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vkpy.backends.podman import attach, exec, hijack, session
from vkpy.errors import (
    BackendError,
    BackendUnavailable,
    ContainerNotRunning,
    PodNotFound,
    StreamingUnsupported,
)
from vkpy.remote import StreamRequest, TerminalSize


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


# ------------------------------------------------------------------ request bodies


def test_the_request_asks_for_the_connection_and_carries_the_body():
    raw = hijack.request_bytes("POST", "/exec/abc/start", params={"h": "4"}, body={"Detach": False})
    head, _, data = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v4.0.0/libpod/exec/abc/start?h=4 HTTP/1.1"
    assert {"Connection: Upgrade", "Upgrade: tcp", f"Content-Length: {len(data)}"} <= set(lines)
    assert json.loads(data) == {"Detach": False}


def test_the_answer_head_is_parsed_and_garbage_refused():
    head = hijack.parse_head(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: x/y\r\nUpgrade: tcp\r\n\r\n")
    assert (head.status, head.reason, head.headers["content-type"]) == (101, "UPGRADED", "x/y")
    with pytest.raises(BackendError, match="not HTTP"):
        hijack.parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_refusals_are_classified_by_what_the_caller_does():
    gone = hijack.failure("op", 404, b'{"message": "no such container"}')
    stopped = hijack.failure("op", 500, b'{"message": "x: container state improper"}')
    other = hijack.failure("op", 500, b"boom")
    assert isinstance(gone, PodNotFound) and "no such container" in str(gone)
    assert isinstance(stopped, ContainerNotRunning)
    assert type(other) is BackendError and "HTTP 500: boom" in str(other)


def test_exec_bodies_follow_the_request():
    plain = StreamRequest(uid="u", container="c", command=("sh", "-c", "x"), stdin=True)
    assert exec.create_body(plain) == {
        "Cmd": ["sh", "-c", "x"],
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
    }
    tty = StreamRequest(uid="u", container="c", command=("sh",), tty=True)
    assert exec.create_body(tty)["AttachStderr"] is False  # one stream with a terminal
    assert exec.start_body(tty) == {"Detach": False, "Tty": True}
    with pytest.raises(BackendError, match="command"):
        exec.create_body(StreamRequest(uid="u", container="c"))


def test_attach_follows_the_containers_terminal_and_stdin():
    ask = StreamRequest(uid="u", container="c", stdin=True)
    with_stdin = {"Config": {"OpenStdin": True, "Tty": False}}
    assert attach.check(ask, with_stdin, name="c") is False
    assert attach.params(ask, tty=True) == {
        "stream": "true",
        "logs": "false",
        "stdin": "true",
        "stdout": "true",
        "stderr": "false",
    }
    with pytest.raises(StreamingUnsupported, match="does not have stdin enabled"):
        attach.check(ask, {"Config": {"OpenStdin": False}}, name="c")
    watch = StreamRequest(uid="u", container="c")
    assert attach.follows_log(watch, with_stdin)  # an attach would close its stdin
    assert not attach.follows_log(ask, with_stdin)
    assert not attach.follows_log(watch, {"Config": {"OpenStdin": True, "Tty": True}})
    assert not attach.follows_log(watch, {"Config": {}})


def test_streams_asked_and_frames_routed():
    assert session.asked(stdout=True, stderr=True, tty=False) == ["stdout", "stderr"]
    assert session.asked(stdout=True, stderr=True, tty=True) == ["stdout"]
    assert session.asked(stdout=False, stderr=True, tty=False) == ["stderr"]
    frames = [(1, b"o"), (0, b"stdin echo"), (2, b"e"), (1, b""), (3, b"?")]
    assert session.route(frames) == [("stdout", b"o"), ("stderr", b"e")]


# ------------------------------------------------------------------ hijack against a server


async def serve(tmp_path: Path, answer: bytes, seen: list[bytes]) -> tuple[str, asyncio.Server]:
    """A unix server that answers ``answer`` and then echoes what comes until EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        if answer.startswith(b"HTTP/1.1 101"):
            while data := await reader.read(1024):
                writer.write(frame(1, data))
            writer.write(frame(2, b"eof seen"))
        writer.close()

    path = str(tmp_path / "podman.sock")
    return path, await asyncio.start_unix_server(handle, path)


async def test_a_hijacked_connection_carries_stdin_its_end_and_the_output(tmp_path):
    seen: list[bytes] = []
    path, server = await serve(tmp_path, b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n", seen)
    async with server:
        reader, writer = await hijack.hijack(path, "exec.start", "/exec/x/start", timeout=2)
        writer.write(b"ping")
        writer.write_eof()
        source = session.from_connection(reader, tty=False, name="t")
        got = [item async for item in source]
        writer.close()
    assert got == [("stdout", b"ping"), ("stderr", b"eof seen")]
    assert seen[0].startswith(b"POST /v4.0.0/libpod/exec/x/start HTTP/1.1")


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (
            b'HTTP/1.1 404 Not Found\r\nContent-Length: 21\r\n\r\n{"message": "no ctr"}',
            PodNotFound,
            "no ctr",
        ),
        (
            b'HTTP/1.1 500 Oops\r\n\r\n{"cause": "container state improper"}',
            ContainerNotRunning,
            "improper",
        ),
        (b"HTTP/1.1 101 UPG", BackendUnavailable, "exec.start"),  # cut before the head ends
        (b"nonsense\r\n\r\n", BackendError, "not HTTP"),
    ],
)
async def test_hijack_failures_are_mapped(tmp_path, answer, error, match):
    path, server = await serve(tmp_path, answer, [])
    async with server:
        with pytest.raises(error, match=match):
            await hijack.hijack(path, "exec.start", "/exec/x/start", timeout=2)


async def test_hijack_to_no_service_or_a_silent_one_is_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable):
        await hijack.hijack(str(tmp_path / "none.sock"), "op", "/x", timeout=1)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    path = str(tmp_path / "silent.sock")
    async with await asyncio.start_unix_server(silent, path):
        with pytest.raises(BackendUnavailable, match="op"):
            await hijack.hijack(path, "op", "/x", timeout=0.2)


# ------------------------------------------------------------------ Session


class FakeControl:
    def __init__(self) -> None:
        self.closed: list[bool] = []
        self.sizes: list[TerminalSize] = []

    async def resize(self, size: TerminalSize) -> None:
        self.sizes.append(size)

    async def exit_code(self) -> int:
        return 3

    async def close(self, *, ended: bool) -> None:
        self.closed.append(ended)


async def items(*pairs: tuple[str, bytes]) -> AsyncIterator[tuple[str, bytes]]:
    for pair in pairs:
        yield pair


async def test_a_session_keeps_streams_apart_and_waits_for_their_end():
    control = FakeControl()
    source = items(("stdout", b"a"), ("stderr", b"b"), ("stdout", b"c"))
    process = session.Session(
        source, None, control, tty=False, streams=["stdout", "stderr"], name="t"
    )
    out, err = await asyncio.gather(
        collect(process.output("stdout")), collect(process.output("stderr"))
    )
    assert (out, err) == (b"ac", b"b")
    assert await process.wait() == 3
    await process.resize(TerminalSize(80, 24))
    assert control.sizes == []  # no terminal: nothing to resize
    with pytest.raises(BackendError, match="no stdin"):
        await process.write(b"x")
    await process.close()
    await process.close()
    assert control.closed == [True]  # once, and the output had ended


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_a_slow_reader_holds_the_source_back_and_close_ends_its_wait():
    taken = 0

    async def endless() -> AsyncIterator[tuple[str, bytes]]:
        nonlocal taken
        while True:
            taken += 1
            yield "stdout", b"x"

    control = FakeControl()
    process = session.Session(endless(), None, control, tty=True, streams=["stdout"], name="t")
    await asyncio.sleep(0.05)
    assert taken <= session.QUEUE_CHUNKS + 2  # bounded, not read into memory
    reader = asyncio.create_task(collect(process.output("stdout")))
    await asyncio.sleep(0.05)
    await process.resize(TerminalSize(100, 40))
    await process.close()
    assert control.closed == [False]  # still running when closed
    assert control.sizes == [TerminalSize(100, 40)]
    await asyncio.wait_for(reader, 1)  # the reader sees the end


async def test_an_output_not_asked_for_is_empty():
    process = session.Session(items(), None, FakeControl(), tty=True, streams=["stdout"], name="t")
    assert await collect(process.output("stderr")) == b""
    await process.close()


class SlowControl(FakeControl):
    """A kill that takes a while, as Podman's API does under load."""

    def __init__(self) -> None:
        super().__init__()
        self.killing = asyncio.Event()
        self.release = asyncio.Event()
        self.killed = False

    async def close(self, *, ended: bool) -> None:
        self.killing.set()
        await self.release.wait()
        self.killed = True
        await super().close(ended=ended)


async def test_a_close_cut_short_by_its_callers_cancellation_still_kills():
    # The kubelet API's handler is cancelled when its connection drops, often while it
    # closes the session: the kill goes on, and closing again waits for it.
    async def running() -> AsyncIterator[tuple[str, bytes]]:
        await asyncio.Event().wait()
        yield "stdout", b""

    control = SlowControl()
    process = session.Session(running(), None, control, tty=True, streams=["stdout"], name="t")
    closer = asyncio.create_task(process.close())
    await control.killing.wait()
    closer.cancel()
    again = asyncio.create_task(process.close())
    await asyncio.sleep(0.01)
    assert not closer.done() and not again.done()  # both wait for the kill
    control.release.set()
    with pytest.raises(asyncio.CancelledError):
        await closer
    await again
    assert control.killed and control.closed == [False]  # once, while it ran
