"""``kubectl attach`` on Podman: the container's own stdio, over a hijacked connection.

``POST /containers/{id}/attach?stream=true`` joins the output from now on (and stdin
when asked); the container's terminal, not the caller's wish, decides whether the
bytes come framed, as with the kubelet. The exit code is the container's, from
``/containers/{id}/wait``. Closing a session detaches; the container runs on.

Podman 4.3 runs conmon of a container with stdin (and no terminal) with ``-i`` and
never ``--leave-stdin-open``: the end of any attach, even one without stdin, closes the
container's stdin. So an attach without stdin to such a container follows its log
instead (the same bytes, from now on), and leaves stdin alone; one with stdin closes
it when it ends, as ``stdinOnce: true`` does, whatever ``stdinOnce`` says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from vkpy.backends.podman.api import PodmanApi
from vkpy.backends.podman.hijack import hijack
from vkpy.backends.podman.session import Session, asked, from_connection, route
from vkpy.errors import StreamingUnsupported
from vkpy.jsontypes import JSON
from vkpy.remote import OutputStream, StreamRequest, TerminalSize


def flag(value: bool) -> str:
    return "true" if value else "false"


def params(request: StreamRequest, *, tty: bool) -> dict[str, str]:
    return {
        "stream": "true",
        "logs": "false",
        "stdin": flag(request.stdin),
        "stdout": flag(request.stdout),
        "stderr": flag(request.stderr and not tty),
    }


def check(request: StreamRequest, inspect: JSON, *, name: str) -> bool:
    """Whether the container has a terminal; refuses stdin it does not keep open."""
    config = inspect.get("Config") or {}
    if request.stdin and not config.get("OpenStdin"):
        raise StreamingUnsupported(
            f"stdin requested but container {name} does not have stdin enabled "
            "(set stdin: true in its spec)"
        )
    return bool(config.get("Tty"))


def follows_log(request: StreamRequest, inspect: JSON) -> bool:
    """Whether to read the log rather than attach: an attach would close stdin."""
    config = inspect.get("Config") or {}
    return bool(config.get("OpenStdin")) and not config.get("Tty") and not request.stdin


async def followed(api: PodmanApi, container: str) -> AsyncIterator[tuple[OutputStream, bytes]]:
    async for frames in api.log_frames(container, follow=True, since=datetime.now(UTC)):
        for routed in route(frames):
            yield routed


class AttachControl:
    def __init__(self, api: PodmanApi, container: str) -> None:
        self.api = api
        self.container = container

    async def resize(self, size: TerminalSize) -> None:
        await self.api.resize_container(self.container, height=size.height, width=size.width)

    async def exit_code(self) -> int:
        return await self.api.wait_container(self.container)

    async def close(self, *, ended: bool) -> None:
        """Detaching is closing the connection; nothing of ours runs in Podman."""


async def start(api: PodmanApi, container: str, request: StreamRequest, *, name: str) -> Session:
    """Join the stdio of the (running) ``container``."""
    inspect = await api.inspect_container(container)
    tty = check(request, inspect, name=name)
    control = AttachControl(api, container)
    wanted = asked(stdout=request.stdout, stderr=request.stderr, tty=tty)
    if follows_log(request, inspect):
        source = followed(api, container)
        return Session(source, None, control, tty=False, streams=wanted, name=name)
    api.calls["container.attach"] += 1
    reader, writer = await hijack(
        api.socket,
        "container.attach",
        f"/containers/{container}/attach",
        params=params(request, tty=tty),
        timeout=api.timeout,
    )
    source = from_connection(reader, tty=tty, name=name)
    return Session(source, writer, control, tty=tty, streams=wanted, name=name)
