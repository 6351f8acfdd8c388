"""Helpers for the tests of the job backends (Slurm, HTCondor): pods of shell
containers, waiting on list(), reading logs, running commands on the login node."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from vkpy.backend import Backend, Container, LogOptions, PodRun, PodSpec, Running, Terminated
from vkpy.backends.batch.jobbackend import JobBackend
from vkpy.testing import contract
from vkpy.testing.podman import IMAGE
from vkpy.testing.waiting import eventually, listed

TIMEOUT = 90.0

# What the contract allows the job backends (Slurm, HTCondor) to do differently. A job
# waits in the queue and its script reports the deadline itself; restarts keep the
# kubelet's 10 s back-off.
JOB_TRAITS = contract.Traits(
    deadline_slack=15.0,
    deadline_container_reason="DeadlineExceeded",
    restart_backoff=None,
)


def node_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def shell(name: str, script: str, **fields: Any) -> Container:
    return Container(name=name, image=IMAGE, command=("sh", "-c", script), **fields)


def pod(name: str, *containers: Container, **fields: Any) -> PodSpec:
    values: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "namespace": "slurm-tests",
        "name": name,
        "containers": containers,
        "restart_policy": "Never",
        "termination_grace_period_seconds": 2,
        **fields,
    }
    return PodSpec(**values)


async def wait_for(
    backend: JobBackend,
    uid: str,
    predicate: Callable[[PodRun | None], bool],
    what: str,
    timeout: float = TIMEOUT,
) -> PodRun | None:
    return await listed(backend, uid, predicate, what, timeout=timeout, interval=0.5)


def ended(run: PodRun | None) -> bool:
    return run is not None and all(isinstance(c.state, Terminated) for c in run.containers)


def running(name: str) -> Callable[[PodRun | None], bool]:
    return lambda run: (
        run is not None
        and any(c.name == name and isinstance(c.state, Running) for c in run.containers)
    )


def states(run: PodRun) -> dict[str, Any]:
    return {c.name: c.state for c in (*run.init_containers, *run.containers)}


async def logs(backend: JobBackend, uid: str, container: str) -> bytes:
    return b"".join([chunk async for chunk in backend.logs(uid, container, LogOptions())])


async def remote(backend: JobBackend, argv: Sequence[str]) -> str:
    done = await backend.runner.run(argv)
    assert done.ok, done.describe()
    return done.text


def processes_of(uid: str, marker: str) -> list[str]:
    """Processes on this host (the login node) naming the pod UID (podman run, conmon)
    or running the pod's ``marker`` command (the container's own program)."""
    table = subprocess.run(["ps", "-eo", "pid=,user=,args="], capture_output=True, text=True)
    return [line.strip() for line in table.stdout.splitlines() if uid in line or marker in line]


async def assert_nothing_left(backend: JobBackend, spec: PodSpec, marker: str) -> None:
    """No container of the pod in the login user's Podman, no process of it (a dying
    conmon gets two seconds)."""

    async def leftovers() -> list[str]:
        names = await remote(
            backend,
            ["podman", "ps", "--all", "--format={{.Names}}", f"--filter=name=vkpy-{spec.uid}"],
        )
        return names.split() + processes_of(spec.uid, marker)

    await eventually(
        leftovers,
        what=f"pod {spec.name} to leave nothing behind on the login node",
        timeout=2,
        until=lambda left: not left,
    )


@contextlib.asynccontextmanager
async def job_harness(
    start: Callable[[], contextlib.AbstractAsyncContextManager[Backend]], host: contract.Host
) -> AsyncIterator[contract.Harness]:
    """The contract's harness over the job backend ``start`` makes; its successor is one
    more backend made the same way, on the same node."""
    async with contextlib.AsyncExitStack() as backends:

        async def successor() -> Backend:
            return await backends.enter_async_context(start())

        first = await successor()
        async with contract.Harness(
            first,
            timeout=90.0,
            poll_seconds=0.5,
            traits=JOB_TRAITS,
            successor=successor,
            host=host,
        ) as made:
            yield made
