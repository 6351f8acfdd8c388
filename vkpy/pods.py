"""The pods of this node: one ordered worker per pod UID, many pods in parallel.

Inputs are marks, not work: a watch event, a backend change, a timer or a resync
marks a pod dirty and starts its worker if none runs; the worker reconciles until
the pod is clean. Each reconcile looks at the newest API object and backend record:

- gone from the API: remove it from the backend;
- being deleted: stop it in the backend within its grace period, post the final
  status, then delete it with grace 0 and a UID precondition;
- active: create it in the backend once (never twice: adopted or created pods are
  marked), then write its status when it changed. Terminal pods are never rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from vkpy.backend import (
    Backend,
    ContainerStatus,
    PodRun,
    Running,
    Terminated,
    Waiting,
    restart_delay,
)
from vkpy.errors import (
    BackendError,
    BackendUnavailable,
    ImagePullError,
    KubeApiError,
    PodConfigError,
    PodError,
    PodRejected,
)
from vkpy.events import EventRecorder
from vkpy.kube.client import Kube
from vkpy.kube.times import parse
from vkpy.kube.watching import Change, Event, Snapshot
from vkpy.metrics import backend_call, reconcile_timer, set_pod_phases
from vkpy.podstatus import TERMINAL_PHASES, Observation, pod_status, same_status
from vkpy.resolve import fetch_sources, pod_spec

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
DEADLINE_SLACK = 10.0  # seconds the backend has to end a pod past its deadline itself


@dataclass
class Tracked:
    """What the agent knows of one pod."""

    pod: JSON | None  # newest API object; None once it is gone from the API
    run: PodRun | None = None  # newest backend record
    created: bool = False  # the backend has (or had) it: never create it again
    written: JSON | None = None  # the status last written
    waiting: Waiting | None = None
    failure: tuple[str, str] | None = None
    attempts: int = 0
    retry: asyncio.TimerHandle | None = None
    deadline: asyncio.TimerHandle | None = None
    started: datetime | None = None
    dirty: bool = True
    worker: asyncio.Task[None] | None = None
    announced: set[str] = field(default_factory=set)  # events already emitted
    deleted: bool = False  # the final grace-0 delete was sent
    # Kept from the first API object (or backend record) seen, so that every log line,
    # the last one after the API object is gone included, names the pod.
    namespace: str = ""
    name: str = ""

    def remember_name(self) -> None:
        meta = (self.pod or {}).get("metadata") or {}
        run = self.run
        self.namespace = meta.get("namespace") or self.namespace or (run.namespace if run else "")
        self.name = meta.get("name") or self.name or (run.name if run else "")


class PodLog(logging.LoggerAdapter[logging.Logger]):
    """Stamps every record with the pod it is about (and its backend job id)."""

    def process(self, msg: str, kwargs: Any) -> tuple[str, Any]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        where = f"{extra.get('pod_namespace')}/{extra.get('pod_name')}"
        return f"pod {where}: {msg}", kwargs


def pod_log(entry: Tracked, uid: str) -> PodLog:
    entry.remember_name()
    run = entry.run
    return PodLog(
        logger,
        {
            "pod_namespace": entry.namespace,
            "pod_name": entry.name,
            "pod_uid": uid,
            "job_id": run.job_id if run else "",
        },
    )


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


class PodController:
    def __init__(
        self,
        kube: Kube,
        backend: Backend,
        events: EventRecorder,
        *,
        node_name: str,
        node_ip: str,
        poll_seconds: float,
        resync_seconds: float,
        allocatable: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self.kube = kube
        self.allocatable = allocatable  # the node's, as last written to its status
        self.backend = backend
        self.events = events
        self.node_name = node_name
        self.node_ip = node_ip
        self.poll_seconds = poll_seconds
        self.resync_seconds = resync_seconds
        self.tracked: dict[str, Tracked] = {}
        self.orphans: dict[str, PodRun] = {}  # backend pods without an API pod (yet)
        self._synced = False  # a first pod listing has been handled

    # ------------------------------------------------------------ inputs

    async def adopt(self, *, first_delay: float = 0.5, max_delay: float = 30.0) -> None:
        """Before the first listing: learn what the backend runs already. Retried until
        the backend answers: watching pods without knowing its jobs could submit twice."""
        attempt = 0
        while True:
            try:
                with backend_call("list"):
                    runs = await self.backend.list()
                break
            except BackendUnavailable as exc:
                delay = min(first_delay * 2**attempt, max_delay)
                attempt += 1
                logger.warning(
                    "backend unavailable before adoption: %s; retrying in %.1fs", exc, delay
                )
                await asyncio.sleep(delay)
        for uid, run in runs.items():
            self.orphans[uid] = run

    async def handle(self, change: Change) -> None:
        """A change from the pod watch."""
        if isinstance(change, Snapshot):
            present = {p["metadata"]["uid"] for p in change.items}
            for uid, entry in self.tracked.items():
                if uid not in present and entry.pod is not None:
                    entry.pod = None
                    self.mark(uid)
            for pod in change.items:
                self._upsert(pod)
            if not self._synced:
                self._synced = True
                for uid in list(self.orphans):  # their pods are gone: clean up
                    self._track_orphan(uid)
        elif isinstance(change, Event):
            if change.type == "DELETED":
                gone = self.tracked.get(change.object["metadata"]["uid"])
                if gone is not None:
                    gone.pod = None
                    self.mark(change.object["metadata"]["uid"])
            else:
                self._upsert(change.object)

    def _upsert(self, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        entry = self.tracked.get(uid)
        if entry is None:
            entry = self.tracked[uid] = Tracked(pod=pod)
            entry.remember_name()
            adopted = self.orphans.pop(uid, None)
            if adopted is not None:
                entry.run, entry.created = adopted, True
                pod_log(entry, uid).info("adopted from the backend (job %s)", adopted.job_id)
        else:
            entry.pod = pod
            entry.remember_name()
        self.mark(uid)

    def _track_orphan(self, uid: str) -> None:
        run = self.orphans.pop(uid)
        self.tracked[uid] = Tracked(pod=None, run=run, created=True)
        self.tracked[uid].remember_name()
        logger.info(
            "backend pod %s/%s (%s) has no pod in the API: removing it",
            run.namespace,
            run.name,
            uid,
        )
        self.mark(uid)

    def backend_changed(self, run: PodRun) -> None:
        """A backend pushed a new record."""
        entry = self.tracked.get(run.uid)
        if entry is None:
            self.orphans[run.uid] = run
            if self._synced:
                self._track_orphan(run.uid)
            return
        self._observe(run.uid, entry, run)

    async def poll(self) -> None:
        """Read every pod's backend record in one call and mark those that changed."""
        with backend_call("list"):
            runs = await self.backend.list()
        for uid, entry in list(self.tracked.items()):
            self._observe(uid, entry, runs.get(uid))
        for uid, run in runs.items():
            if uid not in self.tracked:
                self.orphans[uid] = run
                if self._synced:
                    self._track_orphan(uid)

    def _observe(self, uid: str, entry: Tracked, run: PodRun | None) -> None:
        if run == entry.run:
            return
        if run is None and entry.created and entry.pod is not None:
            # Seen before, gone now, and not by our hand: the kubelet says NotFound.
            entry.failure = entry.failure or ("NotFound", "the pod disappeared from the backend")
            entry.created = False
        else:
            entry.run = run
        self.mark(uid)

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.poll()
            except BackendError as exc:
                logger.warning("backend status poll failed: %s", exc)

    async def resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for uid in list(self.tracked):
                self.mark(uid)

    async def report_phases_forever(self, every: float = 5.0) -> None:
        while True:
            set_pod_phases(self.phase_counts())
            await asyncio.sleep(every)

    # ------------------------------------------------------------ workers

    def mark(self, uid: str) -> None:
        entry = self.tracked.get(uid)
        if entry is None:
            return
        entry.dirty = True
        if entry.worker is None or entry.worker.done():
            entry.worker = asyncio.create_task(self._work(uid), name=f"pod-{uid}")

    def _later(self, uid: str, entry: Tracked, delay: float) -> None:
        if entry.retry is not None:
            entry.retry.cancel()
        entry.retry = asyncio.get_running_loop().call_later(delay, self.mark, uid)

    async def _work(self, uid: str) -> None:
        entry = self.tracked[uid]
        while entry.dirty:
            entry.dirty = False
            try:
                with reconcile_timer():
                    await self._reconcile(uid, entry)
            except asyncio.CancelledError:
                raise
            except (KubeApiError, BackendError) as exc:
                entry.attempts += 1
                delay = min(0.5 * 2 ** min(entry.attempts, 8), 60.0)
                pod_log(entry, uid).warning("%s; retrying in %.1fs", exc, delay)
                self._later(uid, entry, delay)
            except Exception:
                pod_log(entry, uid).exception("unexpected failure; retrying in 30s")
                self._later(uid, entry, 30.0)
        if (
            uid in self.tracked
            and self.tracked[uid] is entry
            and entry.pod is None
            and not entry.created
        ):
            del self.tracked[uid]

    async def _reconcile(self, uid: str, entry: Tracked) -> None:
        pod = entry.pod
        if pod is None:
            await self._remove_from_backend(uid, entry, grace=0)
            return
        if pod["metadata"].get("deletionTimestamp"):
            await self._delete(uid, entry, pod)
            return
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            return  # never rewrite a terminal pod; keep the backend's record for logs
        if not entry.created and entry.failure is None:
            await self._create(uid, entry, pod)
        self._check_deadline(uid, entry, pod)
        await self._write_status(entry, pod)

    # ------------------------------------------------------------ steps

    async def _create(self, uid: str, entry: Tracked, pod: JSON) -> None:
        entry.started = entry.started or datetime.now(UTC)
        try:
            sources = await fetch_sources(self.kube, pod)
            spec = pod_spec(pod, sources, node_ip=self.node_ip, allocatable=self.allocatable())
            with backend_call("create"):
                await self.backend.create(spec)
        except PodConfigError as exc:
            entry.waiting = Waiting(exc.reason, str(exc))
            self.events.pod(pod, "Warning", "Failed", f"Error: {exc}")
            self._retry_later(uid, entry)
            return
        except (PodError, PodRejected) as exc:  # this pod cannot run here: fail it, say why
            entry.failure = (exc.reason, str(exc))
            self.events.pod(pod, "Warning", exc.reason, str(exc))
            return
        except ImagePullError as exc:
            reason = "ImagePullBackOff" if entry.attempts else "ErrImagePull"
            entry.waiting = Waiting(reason, str(exc))
            self.events.pod(pod, "Warning", "Failed", f"Failed to pull image: {exc}")
            self._retry_later(uid, entry)
            return
        except BackendUnavailable as exc:
            entry.waiting = Waiting("ProviderFailed", str(exc))
            self.events.pod(pod, "Warning", "ProviderFailed", str(exc))
            self._retry_later(uid, entry)
            return
        except Exception as exc:  # a defect, in vkpy or below: said on the pod, retried
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            pod_log(entry, uid).exception("creating the pod failed unexpectedly")
            # The kubelet's waiting reason when creating a container fails for a reason
            # it has no name for (pkg/kubelet/container/sync_result.go).
            entry.waiting = Waiting("CreateContainerError", message)
            self.events.pod(pod, "Warning", "Failed", f"Error: {message}")
            self._retry_later(uid, entry)
            return
        entry.created, entry.waiting, entry.attempts = True, None, 0
        pod_log(entry, uid).info("created in %s", self.backend.kind)

    def _retry_later(self, uid: str, entry: Tracked) -> None:
        delay = restart_delay(entry.attempts)
        entry.attempts += 1
        self._later(uid, entry, delay)

    def _check_deadline(self, uid: str, entry: Tracked, pod: JSON) -> None:
        deadline = pod["spec"].get("activeDeadlineSeconds")
        start = (pod.get("status") or {}).get("startTime")
        if deadline is None or start is None or entry.failure is not None:
            return
        left = parse(start).timestamp() + deadline - time.time()
        if left + DEADLINE_SLACK <= 0:
            entry.failure = (
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            )
        elif entry.deadline is None:
            loop = asyncio.get_running_loop()
            entry.deadline = loop.call_later(left + DEADLINE_SLACK, self.mark, uid)

    async def _write_status(self, entry: Tracked, pod: JSON) -> None:
        if entry.failure is not None and entry.created and entry.run is not None:
            await self._remove_from_backend(pod["metadata"]["uid"], entry, grace=0, keep=True)
        seen = Observation(
            run=entry.run,
            node_ip=self.node_ip,
            started=entry.started,
            waiting=entry.waiting,
            failure=entry.failure,
        )
        status = pod_status(pod, seen, datetime.now(UTC))
        if same_status(entry.written or pod.get("status"), status):
            return
        self._announce(entry, pod, status)
        meta = pod["metadata"]
        updated = await self.kube.merge_patch(
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            {"metadata": {"uid": meta["uid"]}, "status": status},
        )
        entry.written = status
        entry.pod = updated

    def _announce(self, entry: Tracked, pod: JSON, status: JSON) -> None:
        """Started / BackOff events the first time each is seen, like the kubelet."""
        for container in status["initContainerStatuses"] + status["containerStatuses"]:
            name, state = container["name"], container["state"]
            key = f"started/{name}/{container['restartCount']}"
            if "running" in state and key not in entry.announced:
                entry.announced.add(key)
                self.events.pod(pod, "Normal", "Started", f"Started container {name}")
            waiting = state.get("waiting") or {}
            key = f"backoff/{name}/{container['restartCount']}"
            if waiting.get("reason") == "CrashLoopBackOff" and key not in entry.announced:
                entry.announced.add(key)
                self.events.pod(
                    pod, "Warning", "BackOff", f"Back-off restarting failed container {name}"
                )

    async def _remove_from_backend(
        self, uid: str, entry: Tracked, *, grace: int, keep: bool = False
    ) -> None:
        if entry.created:
            with backend_call("delete"):
                await self.backend.delete(uid, grace_seconds=grace)
            entry.created = False
            if entry.run is not None:
                now = datetime.now(UTC)
                entry.run = replace(
                    entry.run,
                    containers=tuple(_killed(c, now) for c in entry.run.containers),
                    init_containers=tuple(_killed(c, now) for c in entry.run.init_containers),
                )
        if not keep and entry.pod is None:
            for timer in (entry.retry, entry.deadline):
                if timer is not None:
                    timer.cancel()
            self.tracked.pop(uid, None)

    async def _delete(self, uid: str, entry: Tracked, pod: JSON) -> None:
        if entry.deleted:
            return  # later events of a pod we deleted already; its DELETED event ends it
        meta = pod["metadata"]
        grace = int(meta.get("deletionGracePeriodSeconds") or 0)
        if entry.created:
            for container in pod["spec"].get("containers") or []:
                key = f"killing/{container['name']}"
                if key not in entry.announced:
                    entry.announced.add(key)
                    self.events.pod(
                        pod, "Normal", "Killing", f"Stopping container {container['name']}"
                    )
            await self._remove_from_backend(uid, entry, grace=grace, keep=True)
        if (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            seen = Observation(
                run=entry.run,
                node_ip=self.node_ip,
                started=entry.started,
                waiting=entry.waiting,
                failure=entry.failure,
            )
            status = pod_status(pod, seen, datetime.now(UTC))
            if status["phase"] not in TERMINAL_PHASES:
                status["phase"] = "Failed"
            with contextlib.suppress(KubeApiError):
                await self.kube.merge_patch(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                    {"metadata": {"uid": uid}, "status": status},
                )
        try:
            await self.kube.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
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
        entry.deleted = True
        pod_log(entry, uid).info("deleted")

    # ------------------------------------------------------------ queries

    def find(self, namespace: str, name: str) -> JSON | None:
        """This node's pod namespace/name, for the kubelet API."""
        for entry in self.tracked.values():
            meta = (entry.pod or {}).get("metadata") or {}
            if meta.get("namespace") == namespace and meta.get("name") == name:
                return entry.pod
        return None

    def pods(self) -> list[JSON]:
        return [e.pod for e in self.tracked.values() if e.pod is not None]

    def phase_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.tracked.values():
            if entry.pod is not None:
                phase = (entry.written or entry.pod.get("status") or {}).get("phase", "Pending")
                counts[phase] = counts.get(phase, 0) + 1
        return counts

    async def close(self) -> None:
        workers = [e.worker for e in self.tracked.values() if e.worker and not e.worker.done()]
        for entry in self.tracked.values():
            for timer in (entry.retry, entry.deadline):
                if timer is not None:
                    timer.cancel()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
