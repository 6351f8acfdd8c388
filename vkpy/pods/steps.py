"""The steps of one pod's reconcile: create, stop, delete, status, and their events.

`Steps.reconcile` looks at the newest API object and backend record of one pod:

- gone from the API: remove it from the backend;
- being deleted: stop it in the backend within its grace period, post the final
  status, then delete it with grace 0 and a UID precondition;
- active: create it in the backend once (`Stage` never goes back to NEW); a pod that
  failed for good (rejected, lost, past its deadline) is stopped in the backend, its
  record kept for the status; then its status is written when it changed. Terminal
  pods are never rewritten.

Errors of the Kubernetes API and the backend are raised to the caller, which retries;
create's own failures become the pod's waiting reason and a retry time instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from vkpy.backend import (
    Backend,
    ContainerStatus,
    Running,
    Terminated,
    Waiting,
    restart_delay,
)
from vkpy.errors import (
    BackendUnavailable,
    ImagePullError,
    KubeApiError,
    PodConfigError,
    PodError,
    PodRejected,
    VolumeSourceMissing,
)
from vkpy.events import EventRecorder
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube
from vkpy.kube.times import parse
from vkpy.metrics import backend_call
from vkpy.pods.announce import container_events
from vkpy.pods.state import Stage, Tracked, pod_log
from vkpy.podstatus import TERMINAL_PHASES, pod_status, same_status
from vkpy.resolve import fetch_sources, pod_spec

DEADLINE_SLACK = 10.0  # seconds the backend has to end a pod past its deadline itself
DEADLINE_EXCEEDED = (
    "DeadlineExceeded",
    "Pod was active on the node longer than the specified deadline",
)


@dataclass(frozen=True)
class Wake:
    """When to look at the pod again without an event, in seconds from now."""

    retry: float | None = None  # a create that failed is tried again
    deadline: float | None = None  # the active deadline (and its slack) will have passed


def _killed(status: ContainerStatus, now: datetime) -> ContainerStatus:
    if isinstance(status.state, Terminated):
        return status
    started = status.state.started_at if isinstance(status.state, Running) else None
    return replace(
        status,
        state=Terminated(
            exit_code=137,
            reason="Error",
            message="stopped because the pod was deleted",
            started_at=started,
            finished_at=now,
        ),
    )


def _pod_path(meta: JSON) -> str:
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"


class Steps:
    def __init__(
        self,
        kube: Kube,
        backend: Backend,
        events: EventRecorder,
        *,
        node_ip: str,
        allocatable: Callable[[], dict[str, str]],
        unavailable: Callable[[], None],
    ) -> None:
        self.kube = kube
        self.backend = backend
        self.events = events
        self.node_ip = node_ip
        self.allocatable = allocatable  # the node's, as last written to its status
        self.unavailable = unavailable  # told when the backend cannot be reached

    async def reconcile(self, uid: str, entry: Tracked) -> Wake:
        pod = entry.pod
        if pod is None:
            await self.stop(uid, entry, grace=0)
            return Wake()
        if pod["metadata"].get("deletionTimestamp"):
            await self.delete(uid, entry, pod)
            return Wake()
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            return Wake()  # never rewrite a terminal pod; keep the backend's record for logs
        retry = None
        if entry.stage is Stage.NEW and entry.seen.failure is None:
            retry = await self.create(uid, entry, pod)
        deadline = self.check_deadline(entry, pod)
        if (
            entry.seen.failure is not None
            and entry.stage is Stage.IN_BACKEND
            and entry.seen.run is not None
        ):
            await self.stop(uid, entry, grace=0)  # failed for good: it runs no longer
        await self.write_status(entry, pod)
        return Wake(retry=retry, deadline=deadline)

    # ------------------------------------------------------------ create

    async def create(self, uid: str, entry: Tracked, pod: JSON) -> float | None:
        """Create the pod in the backend; on failure, the seconds until the next try."""
        entry.start(datetime.now(UTC))
        try:
            sources = await fetch_sources(self.kube, pod)
            spec = pod_spec(pod, sources, node_ip=self.node_ip, allocatable=self.allocatable())
            with backend_call("create"):
                await self.backend.create(spec)
        except VolumeSourceMissing as exc:
            entry.wait(Waiting(exc.reason, str(exc)))
            self.events.pod(pod, "Warning", "FailedMount", str(exc))
            return self._retry(entry)
        except PodConfigError as exc:
            entry.wait(Waiting(exc.reason, str(exc)))
            self.events.pod(pod, "Warning", "Failed", f"Error: {exc}")
            return self._retry(entry)
        except (PodError, PodRejected) as exc:  # this pod cannot run here: fail it, say why
            entry.fail(exc.reason, str(exc))
            self.events.pod(pod, "Warning", exc.reason, str(exc))
            return None
        except ImagePullError as exc:
            if exc.never_pull:
                entry.wait(Waiting("ErrImageNeverPull", str(exc)))
                self.events.pod(pod, "Warning", "ErrImageNeverPull", str(exc))
                self.events.pod(pod, "Warning", "Failed", "Error: ErrImageNeverPull")
                return self._retry(entry)
            reason = "ImagePullBackOff" if entry.attempts else "ErrImagePull"
            entry.wait(Waiting(reason, str(exc)))
            self.events.pod(pod, "Warning", "Failed", f"Failed to pull image: {exc}")
            return self._retry(entry)
        except BackendUnavailable as exc:
            entry.unsure = True
            self.unavailable()
            entry.wait(Waiting("ProviderFailed", str(exc)))
            self.events.pod(pod, "Warning", "ProviderFailed", str(exc))
            return self._retry(entry)
        except Exception as exc:  # a defect, in vkpy or below: said on the pod, retried
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            entry.unsure = True
            pod_log(entry, uid).exception("creating the pod failed unexpectedly")
            # The kubelet's waiting reason when creating a container fails for a reason
            # it has no name for (pkg/kubelet/container/sync_result.go).
            entry.wait(Waiting("CreateContainerError", message))
            self.events.pod(pod, "Warning", "Failed", f"Error: {message}")
            return self._retry(entry)
        entry.move(Stage.IN_BACKEND)
        entry.wait(None)
        entry.attempts = 0
        pod_log(entry, uid).info("created in %s", self.backend.kind)
        return None

    @staticmethod
    def _retry(entry: Tracked) -> float:
        delay = restart_delay(entry.attempts)
        entry.attempts += 1
        return delay

    @staticmethod
    def check_deadline(entry: Tracked, pod: JSON) -> float | None:
        """Fail a pod past its active deadline; else the seconds until it will be."""
        deadline = pod["spec"].get("activeDeadlineSeconds")
        start = (pod.get("status") or {}).get("startTime")
        if deadline is None or start is None or entry.seen.failure is not None:
            return None
        left: float = parse(start).timestamp() + deadline - time.time()
        if left + DEADLINE_SLACK <= 0:
            entry.fail(*DEADLINE_EXCEEDED)
            return None
        return left + DEADLINE_SLACK

    # ------------------------------------------------------------ stop and delete

    async def stop(self, uid: str, entry: Tracked, *, grace: int) -> None:
        """Remove the pod from the backend, if it is there; its record says it was killed."""
        if entry.stage is Stage.NEW and entry.unsure:
            # What a create cut short may have left (a Podman pod, a submitted job).
            with backend_call("delete"):
                await self.backend.delete(uid, grace_seconds=0)
            entry.unsure = False
            return
        if entry.stage is not Stage.IN_BACKEND:
            return
        with backend_call("delete"):
            await self.backend.delete(uid, grace_seconds=grace)
        entry.move(Stage.OUT)
        run = entry.seen.run
        if run is not None:
            now = datetime.now(UTC)
            entry.observe(
                replace(
                    run,
                    containers=tuple(_killed(c, now) for c in run.containers),
                    init_containers=tuple(_killed(c, now) for c in run.init_containers),
                )
            )

    async def delete(self, uid: str, entry: Tracked, pod: JSON) -> None:
        if entry.stage is Stage.DELETED:
            return  # later events of a pod we deleted already; its DELETED event ends it
        meta = pod["metadata"]
        if entry.stage is Stage.IN_BACKEND:
            for container in pod["spec"].get("containers") or []:
                self._announce_once(
                    entry,
                    pod,
                    f"killing/{container['name']}",
                    ("Normal", "Killing", f"Stopping container {container['name']}"),
                )
        await self.stop(uid, entry, grace=int(meta.get("deletionGracePeriodSeconds") or 0))
        if (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            status = self.status(entry, pod)
            if status["phase"] not in TERMINAL_PHASES:
                status["phase"] = "Failed"
            with contextlib.suppress(KubeApiError):
                await self.kube.merge_patch(
                    f"{_pod_path(meta)}/status", {"metadata": {"uid": uid}, "status": status}
                )
        try:
            await self.kube.delete(
                _pod_path(meta),
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                },
            )
        except KubeApiError as exc:
            if exc.status not in (404, 409):
                raise
        entry.move(Stage.DELETED)
        pod_log(entry, uid).info("deleted")

    # ------------------------------------------------------------ status

    def status(self, entry: Tracked, pod: JSON) -> JSON:
        return pod_status(pod, entry.seen, datetime.now(UTC))

    async def write_status(self, entry: Tracked, pod: JSON) -> None:
        status = self.status(entry, pod)
        if same_status(entry.written or pod.get("status"), status):
            return
        self._announce(entry, pod, status)
        meta = pod["metadata"]
        updated = await self.kube.merge_patch(
            f"{_pod_path(meta)}/status", {"metadata": {"uid": meta["uid"]}, "status": status}
        )
        entry.written = status
        entry.pod = updated

    def _announce(self, entry: Tracked, pod: JSON, status: JSON) -> None:
        """The kubelet's container events, each the first time it is due (`announce`)."""
        statuses = status["initContainerStatuses"] + status["containerStatuses"]
        for key, event in container_events(statuses):
            self._announce_once(entry, pod, key, event)

    def _announce_once(
        self,
        entry: Tracked,
        pod: JSON,
        key: str,
        event: tuple[Literal["Normal", "Warning"], str, str],
    ) -> None:
        if key not in entry.announced:
            entry.announced.add(key)
            self.events.pod(pod, *event)
