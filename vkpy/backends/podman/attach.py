"""``kubectl attach`` on Podman: the container's own stdio, over a hijacked connection.

``POST /containers/{id}/attach?stream=true`` joins the output from now on (and stdin
when asked); the container's terminal, not the caller's wish, decides whether the
bytes come framed, as with the kubelet. The exit code is the container's, from
``/containers/{id}/wait``. Closing a session detaches; the container runs on.

Limits of Podman 4.3 (conmon runs with ``-i`` and never ``--leave-stdin-open``): the
end of any attach closes the container's stdin, as ``stdinOnce: true`` does, whatever
``stdinOnce`` says.
"""

from __future__ import annotations

from vkpy.backends.podman.api import PodmanApi
from vkpy.backends.podman.hijack import hijack
from vkpy.backends.podman.session import Session, asked
from vkpy.errors import StreamingUnsupported
from vkpy.jsontypes import JSON
from vkpy.remote import StreamRequest, TerminalSize


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
    tty = check(request, await api.inspect_container(container), name=name)
    api.calls["container.attach"] += 1
    reader, writer = await hijack(
        api.socket,
        "container.attach",
        f"/containers/{container}/attach",
        params=params(request, tty=tty),
        timeout=api.timeout,
    )
    control = AttachControl(api, container)
    wanted = asked(stdout=request.stdout, stderr=request.stderr, tty=tty)
    return Session(reader, writer, control, tty=tty, streams=wanted, name=name)
