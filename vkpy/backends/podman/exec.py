"""``kubectl exec`` on Podman: an exec session, started on a hijacked connection.

``POST /containers/{id}/exec`` makes the session, ``POST /exec/{id}/start`` runs it and
hands the connection over (`hijack`), ``/exec/{id}/resize`` follows the caller's
terminal and ``/exec/{id}/json`` gives the exit code once the connection ended.
Closing a session whose command still runs kills the command's process tree on the
host (`procs.kill_tree`; rootful Podman, PIDs as the host sees them); an ended one is
handed to Podman's own cleanup at once (`procs.end_exit_delay`) instead of after
``exit_command_delay``.
"""

from __future__ import annotations

import asyncio
import logging

from vkpy.backends.podman import procs
from vkpy.backends.podman.api import PodmanApi
from vkpy.backends.podman.hijack import hijack
from vkpy.backends.podman.session import Session, asked, from_connection
from vkpy.errors import BackendError, PodNotFound
from vkpy.jsontypes import JSON
from vkpy.remote import StreamRequest, TerminalSize

logger = logging.getLogger(__name__)
START_POLLS = 50
START_POLL_SECONDS = 0.1

SETTLE_SECONDS = 5.0  # for Podman to record an exit it has seen
POLL_SECONDS = 0.05


def create_body(request: StreamRequest) -> JSON:
    if not request.command:
        raise BackendError("exec needs a command")
    return {
        "Cmd": list(request.command),
        "AttachStdin": request.stdin,
        "AttachStdout": request.stdout,
        "AttachStderr": request.stderr and not request.tty,
        "Tty": request.tty,
    }


def start_body(request: StreamRequest) -> JSON:
    return {"Detach": False, "Tty": request.tty}


class ExecControl:
    def __init__(self, api: PodmanApi, session: str, *, name: str) -> None:
        self.api = api
        self.session = session
        self.name = name
        self._exit: int | None = None

    async def resize(self, size: TerminalSize) -> None:
        await self.api.resize_exec(self.session, height=size.height, width=size.width)

    async def _settled(self) -> JSON:
        """The session's inspect once Podman no longer counts it as running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_SECONDS
        while True:
            inspect = await self.api.inspect_exec(self.session)
            if not inspect.get("Running") or loop.time() > deadline:
                return inspect
            await asyncio.sleep(POLL_SECONDS)

    async def exit_code(self) -> int:
        if self._exit is None:
            inspect = await self._settled()
            if inspect.get("Running"):
                raise BackendError(f"{self.name}: Podman still counts the command as running")
            self._exit = int(inspect.get("ExitCode") or 0)
        return self._exit

    async def close(self, *, ended: bool) -> None:
        try:
            if not ended:
                await self._kill()
            await self.exit_code()  # read before the cleanup removes the session
        except PodNotFound:
            return  # Podman cleaned it up already (or the container is gone)
        except BackendError as exc:
            logger.warning("%s: %s", self.name, exc)
        try:
            await asyncio.to_thread(procs.end_exit_delay, self.session)
        except OSError as exc:  # not our processes: Podman cleans up after its delay
            logger.debug("%s: leaving the exec cleanup to Podman: %s", self.name, exc)

    async def _kill(self) -> None:
        # A session whose start is still on its way has no PID yet (Podman records it
        # once conmon reports it): wait for it, or a command started just before its
        # client went away would outlive the session. A PID with Running false: ended.
        for _ in range(START_POLLS):
            inspect = await self.api.inspect_exec(self.session)
            pid = int(inspect.get("Pid") or 0)
            if pid > 0 or inspect.get("Running"):
                break
            await asyncio.sleep(START_POLL_SECONDS)
        if not inspect.get("Running") or pid <= 0:
            return
        try:
            killed = await asyncio.to_thread(procs.kill_tree, pid)
        except OSError as exc:
            raise BackendError(f"{self.name}: cannot kill the command (pid {pid}): {exc}") from exc
        logger.info("%s: killed the command still running (%d processes)", self.name, killed)


async def start(api: PodmanApi, container: str, request: StreamRequest, *, name: str) -> Session:
    """Run ``request.command`` in the (running) ``container``."""
    session = await api.create_exec(container, create_body(request))
    api.calls["exec.start"] += 1
    reader, writer = await hijack(
        api.socket,
        "exec.start",
        f"/exec/{session}/start",
        body=start_body(request),
        timeout=api.timeout,
    )
    control = ExecControl(api, session, name=name)
    wanted = asked(stdout=request.stdout, stderr=request.stderr, tty=request.tty)
    source = from_connection(reader, tty=request.tty, name=name)
    return Session(source, writer, control, tty=request.tty, streams=wanted, name=name)
