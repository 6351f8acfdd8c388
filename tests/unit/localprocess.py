"""A real local process behind the `vkpy.remote` interfaces, for the kubelet API's
streaming tests: the wire protocols are proven against real stdio, exit codes and
kills without a container runtime."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestServer

from vkpy.config import KubeletApiConfig
from vkpy.errors import PodNotFound
from vkpy.kubeletapi.streaming.handlers import StreamingRoutes
from vkpy.remote import OutputStream, StreamRequest, StreamTunnel, TerminalSize, Tunnel

UID = "u-1"
POD = {
    "metadata": {"uid": UID, "name": "p", "namespace": "ns"},
    "spec": {"containers": [{"name": "c"}]},
}


class LocalProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.sizes: list[TerminalSize] = []
        self.closed = False

    async def output(self, stream: OutputStream) -> AsyncIterator[bytes]:
        reader = self.process.stdout if stream == "stdout" else self.process.stderr
        assert reader is not None
        while chunk := await reader.read(65536):
            yield chunk

    async def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    async def close_stdin(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()

    async def resize(self, size: TerminalSize) -> None:
        self.sizes.append(size)

    async def wait(self) -> int:
        return await self.process.wait()

    async def close(self) -> None:
        self.closed = True
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


class LocalBackend:
    """Exec runs the command here; port-forward dials 127.0.0.1."""

    kind = "local"

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.processes: list[LocalProcess] = []
        self.requests: list[StreamRequest] = []

    async def exec(self, request: StreamRequest) -> LocalProcess:
        if request.uid != self.uid:
            raise PodNotFound(f"no pod {request.uid}")
        self.requests.append(request)
        pipe = asyncio.subprocess.PIPE
        process = await asyncio.create_subprocess_exec(
            *request.command,
            stdin=pipe if request.stdin else asyncio.subprocess.DEVNULL,
            stdout=pipe,
            stderr=pipe,
        )
        local = LocalProcess(process)
        self.processes.append(local)
        return local

    async def forward(self, uid: str, port: int) -> Tunnel:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return StreamTunnel(reader, writer)


def routes_for(backend: LocalBackend, **config: object) -> StreamingRoutes:
    """The kubelet API's streaming routes for pod ns/p (container c) on ``backend``."""

    def find_pod(namespace: str, name: str) -> dict[str, object] | None:
        return POD if (namespace, name) == ("ns", "p") else None

    return StreamingRoutes(
        config=KubeletApiConfig(**config),  # type: ignore[arg-type]
        find_pod=find_pod,
        executor=backend,
        attacher=None,
        forwarder=backend,
        backend_kind="local",
    )


async def serve(routes: StreamingRoutes) -> TestServer:
    app = web.Application()
    routes.add_to(app)
    server = TestServer(app)
    await server.start_server()
    return server
