"""A pod controller on the in-memory Kubernetes API and an instant backend, for unit tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from vkpy.backend import PodSpec
from vkpy.events import EventRecorder
from vkpy.jsontypes import JSON
from vkpy.pods import PodController
from vkpy.testing.instant import InstantBackend
from vkpy.testing.memkube import MemKube

NODE = "n1"
NS = "team"


class Backend(InstantBackend):
    """An instant backend that records its calls; ``create_errors`` are raised in turn by
    the first creates, and ``delete_gate`` holds deletes until it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.create_calls: list[str] = []
        self.create_errors: list[Exception] = []
        self.delete_calls: list[tuple[str, int]] = []
        self.delete_gate: asyncio.Event | None = None
        self.deleting = asyncio.Event()

    async def create(self, pod: PodSpec) -> None:
        self.create_calls.append(pod.uid)
        if self.create_errors:
            raise self.create_errors.pop(0)
        await super().create(pod)

    async def delete(self, uid: str, *, grace_seconds: int) -> None:
        self.delete_calls.append((uid, grace_seconds))
        self.deleting.set()
        if self.delete_gate is not None:
            await self.delete_gate.wait()
        await super().delete(uid, grace_seconds=grace_seconds)


def api_pod(name: str = "web", *, node: str = NODE, **spec: Any) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "containers": [{"name": "main", "image": "busybox:1"}],
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def path(name: str = "web") -> str:
    return f"/api/v1/namespaces/{NS}/pods/{name}"


class World:
    """The API, the backend, and a controller between them (its loop not yet running)."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.kube = MemKube()
        self.backend = backend or Backend()
        self.events = EventRecorder(self.kube, NODE)
        self.seen: list[bool] = []  # what the controller said of the backend's reachability
        self.pods = PodController(
            self.kube,
            self.backend,
            self.events,
            node_name=NODE,
            node_ip="10.1.0.1",
            poll_seconds=3600,
            resync_seconds=3600,
            backend_seen=self.seen.append,
        )
        self.backend.on_change(self.pods.backend_changed)

    async def create(self, pod: JSON) -> JSON:
        return await self.kube.create(f"/api/v1/namespaces/{NS}/pods", pod)

    def status(self, name: str = "web") -> JSON:
        pod = self.kube.object(path(name))
        assert pod is not None, f"pod {name} is gone"
        return dict(pod.get("status") or {})

    def status_writes(self, name: str = "web") -> list[JSON]:
        return [body["status"] for body in self.kube.sent("PATCH", f"{path(name)}/status")]

    async def settled(self) -> None:
        """Every worker is done (and no request is under way)."""
        await until(self.pods.workers.idle, what="idle workers")

    async def recorded_events(self) -> list[tuple[str, str]]:
        await self.events.flush()
        listing = await self.kube.get(f"/api/v1/namespaces/{NS}/events")
        return [(e["reason"], e["message"]) for e in listing["items"]]


@contextlib.asynccontextmanager
async def running(world: World) -> AsyncIterator[World]:
    """The controller's loop runs (adoption, then the watch) for the block."""
    task = asyncio.create_task(world.pods.run())
    try:
        yield world
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await world.pods.close()


async def until(
    check: Callable[[], bool | Awaitable[bool]], *, timeout: float = 3.0, what: str = ""
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.005)
