"""Exec, attach and port-forward on the Podman backend, against the testbed's real Podman."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vkpy.backend import Container, PodRun, PodSpec, Running
from vkpy.backends.podman import PodmanBackend
from vkpy.errors import ContainerNotRunning, PodNotFound, PortUnreachable, StreamingUnsupported
from vkpy.remote import OutputStream, Process, StreamRequest, TerminalSize
from vkpy.testing.waiting import eventually

from .test_podman_features import IMAGE, Node, all_terminated, node, pod_spec, sh, wait_for

__all__ = ["node"]  # the fixture, imported for the tests below

TIMEOUT = 20.0
SLEEPER = "trap 'exit 0' TERM; while true; do sleep 1; done"


class Collected:
    """Everything a process writes on its streams, gathered as it comes."""

    def __init__(self, process: Process, streams: tuple[OutputStream, ...]) -> None:
        self.data: dict[OutputStream, bytearray] = {s: bytearray() for s in streams}
        self._tasks = [asyncio.create_task(self._gather(process, s)) for s in streams]

    async def _gather(self, process: Process, stream: OutputStream) -> None:
        async for chunk in process.output(stream):
            self.data[stream] += chunk

    async def until(self, needle: bytes, stream: OutputStream = "stdout") -> bytes:
        await eventually(
            lambda: needle in self.data[stream],
            what=f"{needle!r} on {stream}; got {bytes(self.data[stream][-300:])!r}",
            timeout=TIMEOUT,
            interval=0.05,
        )
        return bytes(self.data[stream])

    async def ended(self) -> dict[OutputStream, bytes]:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*self._tasks)
        return {s: bytes(d) for s, d in self.data.items()}


@contextlib.asynccontextmanager
async def opened(process: Process) -> AsyncIterator[Process]:
    try:
        yield process
    finally:
        await process.close()


async def running_pod(backend: PodmanBackend, pod: PodSpec) -> PodRun:
    await backend.create(pod)
    return await wait_for(
        backend,
        pod.uid,
        lambda r: all(isinstance(c.state, Running) for c in r.containers),
        "every container to run",
    )


def request(pod: PodSpec, *command: str, **kwargs: Any) -> StreamRequest:
    return StreamRequest(uid=pod.uid, container="main", command=command, **kwargs)


async def container_id(backend: PodmanBackend, pod: PodSpec) -> str:
    held = (await backend.driver.observe(pod.uid))[pod.uid]
    history = held.history("main")
    assert history is not None
    return history.current.id


async def exec_sessions(backend: PodmanBackend, pod: PodSpec) -> list[str]:
    inspect = await backend.api.inspect_container(await container_id(backend, pod))
    return list(inspect.get("ExecIDs") or [])


async def ps(backend: PodmanBackend, pod: PodSpec) -> str:
    async with opened(await backend.exec(request(pod, "ps", "-o", "pid,args"))) as process:
        out = await Collected(process, ("stdout",)).ended()
        assert await process.wait() == 0
    return out["stdout"].decode()


# ------------------------------------------------------------------ exec


async def test_exec_keeps_stdout_and_stderr_apart_and_gives_the_exit_code(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("execs", sh("main", SLEEPER))
    await running_pod(backend, pod)
    script = "echo out; echo err >&2; exit 3"
    async with opened(await backend.exec(request(pod, "sh", "-c", script))) as process:
        out = await Collected(process, ("stdout", "stderr")).ended()
        assert await process.wait() == 3
    assert out == {"stdout": b"out\n", "stderr": b"err\n"}


async def test_exec_stdin_carries_a_binary_whole_and_its_end(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("execstdin", sh("main", SLEEPER))
    await running_pod(backend, pod)
    payload = os.urandom(5 * 1024 * 1024)
    async with opened(await backend.exec(request(pod, "cat", stdin=True))) as process:
        collected = Collected(process, ("stdout", "stderr"))
        for start in range(0, len(payload), 256 * 1024):
            await process.write(payload[start : start + 256 * 1024])
        await process.close_stdin()  # cat ends only on EOF
        out = await collected.ended()
        assert await process.wait() == 0
    assert len(out["stdout"]) == len(payload)
    assert hashlib.sha256(out["stdout"]).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert out["stderr"] == b""


async def test_exec_with_a_terminal_follows_resizes(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("exectty", sh("main", SLEEPER))
    await running_pod(backend, pod)
    command = ("sh", "-c", "read go; stty size; [ -t 0 ] && echo is-a-tty")
    async with opened(await backend.exec(request(pod, *command, stdin=True, tty=True))) as process:
        collected = Collected(process, ("stdout",))
        await process.resize(TerminalSize(width=100, height=40))
        await process.write(b"go\r")
        out = await collected.until(b"is-a-tty")
        assert await process.wait() == 0
    assert b"40 100" in out


async def test_closing_a_running_exec_kills_it_and_leaves_nothing(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("execkill", sh("main", SLEEPER))
    await running_pod(backend, pod)
    command = ("sh", "-c", "sleep 1001 & echo started; sleep 1002")
    process = await backend.exec(request(pod, *command))
    await Collected(process, ("stdout",)).until(b"started")
    assert "sleep 1002" in await ps(backend, pod)
    await process.close()
    await process.close()  # again: nothing happens
    table = await ps(backend, pod)
    assert "sleep 1001" not in table and "sleep 1002" not in table, table
    # Podman's record of the sessions goes too, with their conmon, not after 300 s.
    await eventually(
        lambda: exec_sessions(backend, pod), until=lambda ids: ids == [], what="no exec sessions"
    )


async def test_an_ended_exec_session_is_cleaned_up_at_once(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("execclean", sh("main", SLEEPER))
    await running_pod(backend, pod)
    async with opened(await backend.exec(request(pod, "true"))) as process:
        assert await process.wait() == 0
        assert len(await exec_sessions(backend, pod)) == 1  # Podman keeps it for its delay
    await eventually(
        lambda: exec_sessions(backend, pod), until=lambda ids: ids == [], what="no exec sessions"
    )


async def test_exec_into_what_is_not_there_or_not_running(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("execmissing", sh("main", "exit 0"))
    await backend.create(pod)
    await wait_for(backend, pod.uid, all_terminated, "the container to end")
    with pytest.raises(ContainerNotRunning, match="main"):
        await backend.exec(request(pod, "true"))
    with pytest.raises(ContainerNotRunning):
        await backend.attach(request(pod))
    with pytest.raises(PodNotFound, match="other"):
        await backend.exec(StreamRequest(uid=pod.uid, container="other", command=("true",)))
    with pytest.raises(PodNotFound):
        await backend.exec(StreamRequest(uid="no-such-uid", container="main", command=("true",)))
    with pytest.raises(PodNotFound):
        await backend.attach(StreamRequest(uid="no-such-uid", container="main"))
    with pytest.raises(PodNotFound):
        await backend.forward("no-such-uid", 80)


# ------------------------------------------------------------------ attach


async def test_attach_streams_the_output_of_a_running_container(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec(
        "attachout", sh("main", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")
    )
    await running_pod(backend, pod)
    async with opened(await backend.attach(request(pod))) as process:
        out = await Collected(process, ("stdout", "stderr")).until(b"tick")
    assert out.startswith(b"tick ")
    with pytest.raises(StreamingUnsupported, match="does not have stdin enabled"):
        await backend.attach(request(pod, stdin=True))


async def test_attach_with_stdin_reaches_the_container_and_waits_for_its_end(node: Node) -> None:
    backend = await node.backend()
    script = "while read line; do echo got $line; done; echo stdin-closed; exit 7"
    main = Container(name="main", image=IMAGE, command=("sh", "-c", script), stdin=True)
    pod = pod_spec("attachin", main)
    await running_pod(backend, pod)
    watcher = await backend.attach(request(pod))  # no stdin: must leave the container's alone
    async with opened(watcher), opened(await backend.attach(request(pod, stdin=True))) as process:
        watched = Collected(watcher, ("stdout", "stderr"))
        collected = Collected(process, ("stdout", "stderr"))
        await process.write(b"hello\n")
        await collected.until(b"got hello")
        await watched.until(b"got hello")
        await watcher.close()
        await process.write(b"again\n")  # stdin is still open after the watcher left
        await collected.until(b"got again")
        await process.close_stdin()
        await collected.until(b"stdin-closed")
        assert await process.wait() == 7
    with pytest.raises(ContainerNotRunning):
        await backend.attach(request(pod))


async def test_attach_to_a_terminal_container(node: Node) -> None:
    backend = await node.backend()
    script = "read go; stty size; exit 0"
    main = Container(name="main", image=IMAGE, command=("sh", "-c", script), stdin=True, tty=True)
    pod = pod_spec("attachtty", main)
    await running_pod(backend, pod)
    async with opened(await backend.attach(request(pod, stdin=True, tty=True))) as process:
        collected = Collected(process, ("stdout", "stderr"))
        await process.resize(TerminalSize(width=90, height=30))
        await process.write(b"go\r")
        out = await collected.until(b"30 90")
        assert await process.wait() == 0
    assert collected.data["stderr"] == b""  # one stream with a terminal
    assert b"30 90" in out


# ------------------------------------------------------------------ port-forward

HTTPD = "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -h /www -p {}"


async def http_get(backend: PodmanBackend, uid: str, port: int) -> bytes:
    tunnel = await backend.forward(uid, port)
    try:
        await tunnel.write(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        await tunnel.write_eof()
        answer = b""
        async with asyncio.timeout(TIMEOUT):
            while chunk := await tunnel.read(65536):
                answer += chunk
    finally:
        await tunnel.close()
        await tunnel.close()
    return answer


@pytest.mark.parametrize("network", ["bridge", "none"])
async def test_port_forward_reaches_the_pods_loopback(node: Node, network: str) -> None:
    backend = await node.backend(network=network)
    pod = pod_spec(f"forward-{network}", sh("main", HTTPD.format("127.0.0.1:8080")))
    await running_pod(backend, pod)

    async def answer_or_nothing() -> bytes:
        try:
            return await http_get(backend, pod.uid, 8080)
        except PortUnreachable:  # httpd is not listening yet
            return b""

    answer = await eventually(answer_or_nothing, what="httpd to answer")
    assert answer.split(b"\r\n")[0].endswith(b" 200 OK"), answer[:200]
    assert answer.endswith(b"hello-from-the-pod\n")
    with pytest.raises(PortUnreachable, match="8081"):
        await backend.forward(pod.uid, 8081)
