"""Intake and scheduling: which pods this node has, and when each one is reconciled.

Inputs are marks, not work: a watch event, a backend change, a timer or a resync
marks a pod dirty and starts its worker if none runs (`vkpy.aio.Workers`); the worker
runs `Steps.reconcile` until the pod is clean. `PodController.run` is the controller's
one loop: adoption, then the pod watch; the backend poll; the resync; the phase gauge.

Backend pods no API pod claims are held back until the first pod listing: after it,
they are orphans, removed from the backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from vkpy.aio import Workers, backoff, supervise
from vkpy.backend import Backend, PodRun
from vkpy.errors import BackendError, BackendUnavailable, KubeApiError
from vkpy.events import EventRecorder
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube
from vkpy.kube.watching import Change, Snapshot, watch_forever
from vkpy.metrics import backend_call, count_watch_restart, reconcile_timer, set_pod_phases
from vkpy.pods.state import Stage, Tracked, pod_log
from vkpy.pods.steps import Steps
from vkpy.podstatus import Observation

logger = logging.getLogger("vkpy.pods")

RETRY_FIRST, RETRY_MAX = 0.5, 60.0  # a reconcile the API or the backend failed
UNEXPECTED_RETRY = 30.0  # a reconcile that failed in a way nobody expected
PHASE_GAUGE_SECONDS = 5.0


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
        backend_seen: Callable[[bool], None] = lambda ok: None,
    ) -> None:
        self.kube = kube
        self.backend = backend
        self.node_name = node_name
        self.node_ip = node_ip
        self.poll_seconds = poll_seconds
        self.resync_seconds = resync_seconds
        # Told whether a backend call got through: False as soon as one finds the backend
        # unreachable, True after each poll that succeeded (the node's Ready follows).
        self.backend_seen = backend_seen
        self.steps = Steps(
            kube,
            backend,
            events,
            node_ip=node_ip,
            allocatable=allocatable,
            unavailable=lambda: backend_seen(False),
        )
        self.tracked: dict[str, Tracked] = {}
        self.orphans: dict[str, PodRun] = {}  # backend pods without an API pod (yet)
        self.workers: Workers[str] = Workers(self._work, name=lambda uid: f"pod-{uid}", log=logger)
        self._synced = False  # a first pod listing has been handled

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Every loop of the controller; the caller's supervisor logs a failure."""
        await supervise(
            {
                "pod-watch": self.watch(),
                "backend-poll": self.poll_forever(),
                "pod-resync": self.resync_forever(),
                "pod-phase-gauge": self.report_phases_forever(),
            },
            log=None,
        )

    async def watch(self) -> None:
        """Adopt the backend's pods, then list+watch this node's pods; the lease and node
        status run meanwhile, so an unreachable backend shows as NotReady, not as silence."""
        await self.adopt()
        await watch_forever(
            self.kube,
            "/api/v1/pods",
            {"fieldSelector": f"spec.nodeName={self.node_name}"},
            self.handle,
            on_restart=lambda: count_watch_restart("pods"),
        )

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
                self.backend_seen(False)
                delay = backoff(attempt, first=first_delay, cap=max_delay)
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
        elif change.type == "DELETED":
            gone = self.tracked.get(change.object["metadata"]["uid"])
            if gone is not None:
                gone.pod = None
                self.mark(change.object["metadata"]["uid"])
        else:
            self._upsert(change.object)

    def _track(self, uid: str, pod: JSON | None, run: PodRun | None) -> Tracked:
        entry = self.tracked[uid] = Tracked(
            pod=pod,
            stage=Stage.NEW if run is None else Stage.IN_BACKEND,
            seen=Observation(run=run, node_ip=self.node_ip),
        )
        return entry

    def _upsert(self, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        entry = self.tracked.get(uid)
        if entry is None:
            adopted = self.orphans.pop(uid, None)
            entry = self._track(uid, pod, adopted)
            if adopted is not None:
                pod_log(entry, uid).info("adopted from the backend (job %s)", adopted.job_id)
        else:
            entry.pod = pod
            entry.remember_name()
        self.mark(uid)

    def _track_orphan(self, uid: str) -> None:
        run = self.orphans.pop(uid)
        self._track(uid, None, run)
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
        """Read every pod's backend record in one call and mark those that changed.
        A pod that moved while the listing was under way (its create ended meanwhile)
        is left to the next one: the listing may predate it, and would say it is gone."""
        moves = {uid: entry.moves for uid, entry in self.tracked.items()}
        try:
            with backend_call("list"):
                runs = await self.backend.list()
        except BackendUnavailable:
            self.backend_seen(False)
            raise
        self.backend_seen(True)
        for uid, entry in list(self.tracked.items()):
            if moves.get(uid) == entry.moves:
                self._observe(uid, entry, runs.get(uid))
        for uid, run in runs.items():
            if uid not in self.tracked:
                self.orphans[uid] = run
                if self._synced:
                    self._track_orphan(uid)

    def _observe(self, uid: str, entry: Tracked, run: PodRun | None) -> None:
        if run == entry.seen.run:
            return
        if run is None and entry.stage is Stage.IN_BACKEND and entry.pod is not None:
            # Seen before, gone now, and not by our hand: the kubelet says NotFound.
            entry.fail("NotFound", "the pod disappeared from the backend")
            entry.move(Stage.OUT)
        else:
            entry.observe(run)
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

    async def report_phases_forever(self, every: float = PHASE_GAUGE_SECONDS) -> None:
        while True:
            set_pod_phases(self.phase_counts())
            await asyncio.sleep(every)

    # ------------------------------------------------------------ workers

    def mark(self, uid: str) -> None:
        if uid in self.tracked:
            self.workers.mark(uid)

    async def _work(self, uid: str) -> None:
        entry = self.tracked.get(uid)
        if entry is None:
            return
        try:
            with reconcile_timer():
                wake = await self.steps.reconcile(uid, entry)
        except (KubeApiError, BackendError) as exc:
            if isinstance(exc, BackendUnavailable):
                self.backend_seen(False)
            entry.attempts += 1
            delay = backoff(entry.attempts, first=RETRY_FIRST, cap=RETRY_MAX)
            pod_log(entry, uid).warning("%s; retrying in %.1fs", exc, delay)
            self.workers.later(uid, delay)
        except Exception:
            pod_log(entry, uid).exception("unexpected failure; retrying in %.0fs", UNEXPECTED_RETRY)
            self.workers.later(uid, UNEXPECTED_RETRY)
        else:
            if wake.retry is not None:
                self.workers.later(uid, wake.retry)
            if wake.deadline is not None:
                self.workers.later(uid, wake.deadline, timer="deadline", sooner_only=True)
        if entry.pod is None and entry.stage is not Stage.IN_BACKEND:
            self._forget(uid, entry)

    def _forget(self, uid: str, entry: Tracked) -> None:
        """Gone from the API and out of the backend: nothing is left to do for it."""
        if self.tracked.get(uid) is entry:
            del self.tracked[uid]
            self.workers.cancel_timers(uid)

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
        await self.workers.close()
