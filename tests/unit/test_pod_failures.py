"""A pod whose creation fails in a way vkpy has no name for says so (a waiting reason
and a Warning Event) and is retried with back-off; log lines keep naming a pod whose
API object is gone."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from vkpy.backend import SANDBOX_FAILED, ContainerStatus, PodRun, PodSpec, Waiting
from vkpy.kube.watching import Event
from vkpy.pods import PodController
from vkpy.testing.instant import InstantBackend


class BrokenBackend(InstantBackend):
    """Its create() fails with an error no layer of vkpy expects."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def create(self, pod: PodSpec) -> None:
        self.attempts += 1
        raise RuntimeError("the backend broke")


class SandboxFailing(InstantBackend):
    """Holds the pod, its container waiting while its sandbox is retried."""

    async def create(self, pod: PodSpec) -> None:
        waiting = Waiting("ContainerCreating", f"{SANDBOX_FAILED}duplicate allocation")
        run = PodRun(pod.uid, pod.namespace, pod.name, (ContainerStatus("main", waiting),))
        self.runs[pod.uid] = run
        for callback in self._callbacks:
            callback(run)


class RecordingKube:
    """Answers status patches with the patched pod, and records them."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.patches: list[dict[str, Any]] = []
        self.on_delete: Any = None

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(body)
        return {**self.pod, "status": body["status"]}

    async def delete(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.on_delete is not None:
            await self.on_delete()
        return {}


class RecordingEvents:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def pod(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.seen.append((type_, reason, message))


def api_pod(uid: str = "5e0c9a62-3b1f-4f0e-9c39-2f5d1a7b8c90") -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "team", "uid": uid},
        "spec": {"nodeName": "n", "containers": [{"name": "main", "image": "busybox:1"}]},
        "status": {"phase": "Pending"},
    }


def controller(kube: RecordingKube, backend: InstantBackend, events: RecordingEvents):
    return PodController(
        cast(Any, kube),
        backend,
        cast(Any, events),
        node_name="n",
        node_ip="127.0.0.1",
        poll_seconds=60,
        resync_seconds=60,
    )


async def settled(pods: PodController) -> None:
    for _ in range(100):
        await asyncio.sleep(0.01)
        if pods.workers.idle():
            return


async def test_an_unexpected_error_gives_a_reason_an_event_and_a_retry(caplog):
    pod = api_pod()
    kube, backend, events = RecordingKube(pod), BrokenBackend(), RecordingEvents()
    pods = controller(kube, backend, events)
    await pods.handle(Event("ADDED", pod))
    await settled(pods)
    assert backend.attempts == 1
    (waiting,) = [c["state"]["waiting"] for c in kube.patches[-1]["status"]["containerStatuses"]]
    assert waiting == {
        "reason": "CreateContainerError",
        "message": "RuntimeError: the backend broke",
    }
    assert ("Warning", "Failed", "Error: RuntimeError: the backend broke") in events.seen
    uid = pod["metadata"]["uid"]
    retry = pods.workers.timer(uid)
    assert retry is not None  # retried with the kubelet's back-off, not at once
    delay = retry.when() - asyncio.get_running_loop().time()
    assert 5 < delay <= 10
    retry.cancel()
    pods.mark(uid)  # the timer fires: it tries again
    await settled(pods)
    assert backend.attempts == 2
    retry = pods.workers.timer(uid)
    assert retry is not None
    assert retry.when() - asyncio.get_running_loop().time() > delay
    await pods.close()


async def test_the_last_line_about_a_deleted_pod_names_it(caplog):
    pod = api_pod()
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube, events = RecordingKube(pod), RecordingEvents()
    pods = controller(kube, InstantBackend(), events)
    # The watch's DELETED event arrives while the final delete is on its way.
    kube.on_delete = lambda: pods.handle(Event("DELETED", pod))
    caplog.set_level(logging.INFO, logger="vkpy.pods")
    await pods.handle(Event("MODIFIED", pod))
    await settled(pods)
    lines = [r.getMessage() for r in caplog.records if r.name == "vkpy.pods"]
    assert any(line.endswith(": deleted") for line in lines), lines
    assert all(line.startswith("pod team/web: ") for line in lines), lines
    await pods.close()


async def test_a_sandbox_being_retried_gives_the_kubelets_event_once():
    pod = api_pod()
    kube, backend, events = RecordingKube(pod), SandboxFailing(), RecordingEvents()
    pods = controller(kube, backend, events)
    await pods.handle(Event("ADDED", pod))
    await settled(pods)
    await pods.poll()  # the backend's record, as the agent's poll reads it
    await settled(pods)
    message = "Failed to create pod sandbox: duplicate allocation"
    (waiting,) = [c["state"]["waiting"] for c in kube.patches[-1]["status"]["containerStatuses"]]
    assert waiting == {"reason": "ContainerCreating", "message": message}
    assert kube.patches[-1]["status"]["phase"] == "Pending"
    assert events.seen.count(("Warning", "FailedCreatePodSandBox", message)) == 1
    await pods.close()
