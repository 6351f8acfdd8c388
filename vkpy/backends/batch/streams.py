"""exec, attach and port-forward for the job backends (`vkpy.remote`), over the runner.

Each starts with one probe command (`reach.probe_argv`: is the container running, and
on which node), then opens an interactive session running the runtime's exec or
attach on that node (each system says how to run a command there: ``on_node``), or a
TCP connection to the node's port. `JobProcess.close` ends a session that has not
ended by itself by killing, on the node, every process carrying the session's mark
(`reach.kill_argv`), then the session's own channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import ClassVar, Protocol

from vkpy.aio import finish
from vkpy.backends.batch import reach
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.reach import Placement, Target
from vkpy.backends.batch.runtime import RuntimeOptions
from vkpy.errors import BackendError, PodNotFound, StreamingUnsupported
from vkpy.remote import OutputStream, StreamRequest, TerminalSize, Tunnel
from vkpy.transport import Runner
from vkpy.transport.interactive import Interactive, Session
from vkpy.transport.sized import SizedSession

logger = logging.getLogger(__name__)

KILL_TIMEOUT_SECONDS = 30.0
EXIT_RECORD_SECONDS = 5.0  # how long attach's wait() looks for the script's exit record


class Node(Protocol):
    """What a job backend gives the streams: its runner, runtime and layout, and how
    its batch system says where a job runs and runs a command there."""

    system: ClassVar[str]
    where_test: ClassVar[str]
    runner: Runner

    @property
    def runtime(self) -> RuntimeOptions: ...

    async def layout_now(self) -> Layout: ...

    def placement(self, answer: str, job_id: str) -> Placement: ...

    def on_node(self, target: Target, argv: Sequence[str], *, tty: bool) -> list[str]: ...


class JobProcess:
    """A session on the job's node as a `vkpy.remote.Process`."""

    def __init__(
        self,
        session: Session,
        *,
        kill: Callable[[], Awaitable[None]],
        exit_code: Callable[[int], Awaitable[int]] | None = None,
    ) -> None:
        self._session = session
        self._kill = kill
        self._exit_code = exit_code
        self._ended: asyncio.Task[int] = asyncio.ensure_future(session.wait())
        self._closing: asyncio.Task[None] | None = None

    def output(self, stream: OutputStream) -> AsyncIterator[bytes]:
        return self._session.output(stream)

    async def write(self, data: bytes) -> None:
        await self._session.write(data)

    async def close_stdin(self) -> None:
        await self._session.close_stdin()

    async def resize(self, size: TerminalSize) -> None:
        await self._session.resize(size)

    async def wait(self) -> int:
        status = await asyncio.shield(self._ended)
        return await self._exit_code(status) if self._exit_code else status

    async def close(self) -> None:
        # A task of its own, waited for to its end: a caller cancelled meanwhile (the
        # kubelet API's handler, when its connection drops) must not cut the kill short.
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name="closing a job session")
        await finish(self._closing)

    async def _close(self) -> None:
        try:
            if not self._ended.done():
                await self._kill()
        finally:
            await self._session.close()
            self._ended.cancel()
            with contextlib.suppress(asyncio.CancelledError, BackendError):
                await self._ended


async def locate(node: Node, uid: str, container: str) -> Target:
    """The running container (any container: ``container`` empty) and its job's node."""
    reach.check_names(uid, container)
    layout = await node.layout_now()
    argv = reach.probe_argv(layout.pod(uid), container, node.where_test)
    answer = await node.runner.run(argv, idempotent=True)
    if answer.status == 3:
        raise PodNotFound(f"pod uid {uid} has no {node.system} job on this node")
    if not answer.ok:
        raise BackendError(f"cannot look up pod uid {uid}: {answer.describe()}")
    probe = reach.parse_probe(answer.text)
    place = (
        node.placement(probe.queue, probe.job_id)
        if probe.job_id
        else Placement(False, why=f"pod uid {uid} has not been submitted to {node.system} yet")
    )
    return reach.target(probe, place, uid=uid, container=container, system=node.system)


def fresh(target: Target) -> bool:
    """Whether the container's run started so lately that it may not run yet."""
    return time.time() - target.started < reach.FRESH_SECONDS


def interactive(node: Node) -> Interactive:
    if not isinstance(node.runner, Interactive):
        raise StreamingUnsupported(f"the runner for {node.runner.target} cannot stream")
    return node.runner


def killer(node: Node, target: Target, tag: str) -> Callable[[], Awaitable[None]]:
    async def kill() -> None:
        argv = node.on_node(target, reach.kill_argv(tag), tty=False)
        try:
            answer = await node.runner.run(argv, timeout=KILL_TIMEOUT_SECONDS)
        except BackendError as exc:
            logger.warning("pod uid %s: cannot end session %s: %s", target.uid, tag, exc)
            return
        if not answer.ok:  # the job may have ended meanwhile, and its processes with it
            logger.info("pod uid %s: ending session %s: %s", target.uid, tag, answer.describe())

    return kill


async def exec_process(node: Node, request: StreamRequest) -> JobProcess:
    target = await locate(node, request.uid, request.container)
    tag = secrets.token_hex(8)
    command = reach.exec_argv(
        node.runtime,
        request.uid,
        request.container,
        request.command,
        stdin=request.stdin,
        tty=request.tty,
        tag=tag,
        fresh=fresh(target),
    )
    runner, argv = interactive(node), node.on_node(target, command, tty=request.tty)

    def start(terminal: TerminalSize | None) -> Awaitable[Session]:
        return runner.start(
            argv,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr and not request.tty,
            terminal=terminal,
        )

    session = SizedSession(start) if request.tty else await start(None)
    return JobProcess(session, kill=killer(node, target, tag))


async def attach_process(node: Node, request: StreamRequest) -> JobProcess:
    if request.stdin or request.tty:
        raise StreamingUnsupported(
            f"the {node.system} backend runs containers without "
            f"{'a terminal' if request.tty else 'stdin'} (stdin from /dev/null); "
            "attach can only follow their output"
        )
    target = await locate(node, request.uid, request.container)
    tag = secrets.token_hex(8)
    command = reach.attach_argv(
        node.runtime, request.uid, request.container, tag=tag, fresh=fresh(target)
    )
    session = await interactive(node).start(
        node.on_node(target, command, tty=False),
        stdin=False,
        stdout=request.stdout,
        stderr=request.stderr,
    )

    async def container_exit(_client_status: int) -> int:
        # podman attach answers 0 for a container killed by a signal: the job
        # script's record of the run is the container's exit code.
        return await recorded_exit(node, target)

    return JobProcess(session, kill=killer(node, target, tag), exit_code=container_exit)


async def recorded_exit(node: Node, target: Target) -> int:
    path = f"{(await node.layout_now()).status(target.uid)}/{target.container}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EXIT_RECORD_SECONDS
    while True:
        data = await node.runner.get(path)
        code = reach.exit_code((data or b"").decode(errors="replace").splitlines(), target.run)
        if code is not None:
            return code
        if loop.time() >= deadline:
            raise BackendError(
                f"container {target.container} of pod uid {target.uid}: its run "
                f"{target.run} ended without an exit code recorded"
            )
        await asyncio.sleep(0.5)


async def forward(node: Node, uid: str, port: int) -> Tunnel:
    target = await locate(node, uid, "")
    if not target.shares_network:
        raise StreamingUnsupported(
            f"pod uid {uid} has a network of its own (podman_network: "
            f"{node.runtime.network}), which the {node.system} node cannot reach: "
            "port-forward needs containers on the node's network (podman_network: host)"
        )
    if not 0 < port < 65536:
        raise StreamingUnsupported(f"port {port} is no TCP port")
    return await interactive(node).open_tcp(target.host, port)
