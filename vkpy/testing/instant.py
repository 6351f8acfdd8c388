"""An in-process backend whose pods start at once: for benchmarks and agent tests.

It measures the agent and the API server alone. A pod's containers run as soon as
it is created; the annotation ``vkpy.io/instant-exit: "<code>"`` makes them end at
once with that exit code instead. Never a substitute for a real backend's tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime

from vkpy.backend import (
    Capacity,
    ContainerStatus,
    Health,
    LogOptions,
    PodRun,
    PodSpec,
    Running,
    Terminated,
)
from vkpy.errors import PodNotFound

EXIT_ANNOTATION = "vkpy.io/instant-exit"


class InstantBackend:
    kind = "instant"

    def __init__(self) -> None:
        self.runs: dict[str, PodRun] = {}
        self.creates = 0
        self.healthy = True
        self._callbacks: list[Callable[[PodRun], None]] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def health(self) -> Health:
        return Health(self.healthy, "" if self.healthy else "switched off by the test")

    async def capacity(self) -> Capacity | None:
        return Capacity(cpu_millis=64000, memory_bytes=256 << 30, pods=5000)

    def on_change(self, callback: Callable[[PodRun], None]) -> None:
        self._callbacks.append(callback)

    async def create(self, pod: PodSpec) -> None:
        if pod.uid in self.runs:
            return
        self.creates += 1
        now = datetime.now(UTC)
        exit_code = pod.annotations.get(EXIT_ANNOTATION)
        if exit_code is None:
            state: Running | Terminated = Running(now)
        else:
            code = int(exit_code)
            state = Terminated(
                code, "Completed" if code == 0 else "Error", started_at=now, finished_at=now
            )
        init = tuple(
            ContainerStatus(
                c.name,
                Terminated(0, "Completed", started_at=now, finished_at=now),
                image=c.image,
                container_id=f"instant://{pod.uid}/{c.name}",
            )
            for c in pod.init_containers
        )
        containers = tuple(
            ContainerStatus(
                c.name, state, image=c.image, container_id=f"instant://{pod.uid}/{c.name}"
            )
            for c in pod.containers
        )
        run = PodRun(
            pod.uid,
            pod.namespace,
            pod.name,
            containers,
            init,
            pod_ip="10.0.0.1",
            job_id=pod.uid[:8],
        )
        self.runs[pod.uid] = run
        for callback in self._callbacks:
            callback(run)

    async def delete(self, uid: str, *, grace_seconds: int) -> None:
        self.runs.pop(uid, None)

    async def list(self) -> Mapping[str, PodRun]:
        return dict(self.runs)

    async def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        if uid not in self.runs:
            raise PodNotFound(uid)
        yield f"instant pod {uid} container {container}\n".encode()
