"""Keeps the node's Podman pods moving: Podman's events in, `PodRun`s out, next steps done.

Each event marks its pod dirty; one refresher lists the dirty pods' containers (one
call for one pod or for the node), publishes every changed `PodRun` to the callbacks,
and asks `progress.plan` what the pod needs. Immediate steps (start, restart, remove,
stop at the deadline) run in the pod's worker (`vkpy.aio.Workers`), under the pod's
lock, after a fresh look; later ones (a back-off's end, the deadline) set a timer for
the pod. A full resync every ``resync_seconds`` is the safety net under the events,
and runs whenever the event stream (re)connects, which is also how a starting backend
adopts what runs already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from vkpy.aio import Workers, backoff, guard
from vkpy.backend import PodRun
from vkpy.backends.podman import observed, progress, spec, status, volumes
from vkpy.backends.podman.api import PodmanApi
from vkpy.errors import BackendError, BackendUnavailable, PodNotFound
from vkpy.jsontypes import JSON

logger = logging.getLogger(__name__)

EVENT_ACTIONS = ("create", "start", "died", "remove")
TIMER_SLACK = 0.05  # wake a hair after a due time, so "due <= now" holds
RETRY_PAUSE = 1.0
DEBOUNCE = 0.05
EVENTS_BACKOFF_FIRST = 0.5
EVENTS_BACKOFF_MAX = 30.0
# libpod's words when a container's dependencies, the pod's infra container (its
# sandbox), did not start: typically its network setup failed, as when the Podman service
# stopped halfway through it and left the IP allocated to the infra container.
SANDBOX_FAILED = "starting some containers"
SANDBOX_BACKOFF_FIRST = 1.0
SANDBOX_BACKOFF_MAX = 30.0


class Driver:
    def __init__(
        self,
        api: PodmanApi,
        *,
        node: str,
        state_dir: Path,
        delay: Callable[[int], float],
        resync_seconds: float,
    ) -> None:
        self.api = api
        self.node = node
        self.state_dir = state_dir
        self.delay = delay
        self.resync_seconds = resync_seconds
        self.callbacks: list[Callable[[PodRun], None]] = []
        self.pod_ips: dict[str, str | None] = {}
        self._published: dict[str, PodRun] = {}
        self._endings: dict[str, observed.Ending] = {}  # by container ID: an ending is final
        self._start_errors: dict[str, tuple[str, datetime]] = {}  # by container ID
        # By pod uid: sandbox failures since it last started, when to try again, and why.
        self._sandbox_failures: dict[str, tuple[int, float, str]] = {}
        self.cut_short: dict[str, str] = {}  # uid: Podman pod, to remove (`_cut_short`)
        self._specs: dict[str, dict[str, JSON]] = {}
        self._specless: set[tuple[str, str]] = set()  # told already: cannot restart
        self._locks: dict[str, asyncio.Lock] = {}
        self._deleting: set[str] = set()
        self._acting: Workers[str] = Workers(
            self.act, name=lambda uid: f"acting on pod uid {uid}", log=logger, quiet=(BackendError,)
        )
        self._dirty: set[str] = set()
        self._dirty_all = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> None:
        self._closing = False
        for coroutine, what in (
            (self._refresher(), "the status refresher"),
            (self._watch_events(), "the Podman event watcher"),
            (self._resync(), "the periodic resync"),
        ):
            self._tasks.append(
                asyncio.create_task(guard(coroutine, what, log=logger, quiet=(BackendError,)))
            )

    async def stop(self) -> None:
        self._closing = True
        tasks = list(self._tasks)
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(self._acting.close(), *tasks, return_exceptions=True)

    # ------------------------------------------------------------ per pod

    def lock(self, uid: str) -> asyncio.Lock:
        """Held while a pod is created, acted on or deleted."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def remember(self, uid: str, bodies: dict[str, JSON]) -> None:
        """The container bodies of a pod just created, for its restarts."""
        self._specs[uid] = bodies

    def deleting(self, uid: str) -> None:
        """From now on, leave the pod alone: it is being deleted."""
        self._deleting.add(uid)
        self._acting.cancel_timers(uid)

    def deleted(self, uid: str) -> None:
        self._deleting.discard(uid)
        self.forget(uid)

    def forget(self, uid: str) -> None:
        self._published.pop(uid, None)
        self.pod_ips.pop(uid, None)
        self._specs.pop(uid, None)
        self._sandbox_failures.pop(uid, None)
        self._specless = {key for key in self._specless if key[0] != uid}
        self._acting.cancel_timers(uid)
        lock = self._locks.get(uid)
        if lock is not None and not lock.locked():
            del self._locks[uid]

    # ------------------------------------------------------------ observing Podman

    async def observe(self, uid: str | None) -> dict[str, observed.PodState]:
        """The node's pods (or one pod) as Podman holds them: one list call, plus one
        inspect per container instance that ended since we last looked."""
        labels = {spec.NODE: self.node}
        if uid is not None:
            labels[spec.UID] = uid
        entries = await self.api.list_containers(labels)
        instances = [i for i in map(observed.from_list_entry, entries) if i is not None]
        await asyncio.gather(
            *(self._read_ending(i.id) for i in instances if i.ended and i.id not in self._endings),
            *(
                self._read_pod_ip(i)
                for i in instances
                if i.infra and i.running and i.uid not in self.pod_ips
            ),
        )
        seen: list[observed.Instance] = []
        for listed in instances:
            ending = self._endings.get(listed.id)
            start_error = self._start_errors.get(listed.id)
            if listed.ended and ending is not None:
                seen.append(observed.with_ending(listed, ending))
            elif listed.not_started and start_error is not None:
                seen.append(observed.with_start_error(listed, *start_error))
            else:
                seen.append(listed)
        if uid is None:  # a full view: forget what is gone
            ids = {i.id for i in instances}
            for cache in (self._endings, self._start_errors):
                for gone in set(cache) - ids:
                    del cache[gone]
        pods = observed.group(seen)
        for cut in [p for p in pods.values() if self._cut_short(p)]:
            del pods[cut.uid]
            self.cut_short[cut.uid] = cut.pod
        return pods

    def _cut_short(self, pod: observed.PodState) -> bool:
        """A pod whose create stopped half-way with no create of ours under way: an
        earlier agent was killed while making it. Nothing of it ever ran (containers
        start once all exist), so it is not reported but removed, and the pod controller,
        seeing nothing, creates the pod afresh."""
        lock = self._locks.get(pod.uid)
        return not pod.complete and not (lock is not None and lock.locked())

    async def _read_ending(self, container_id: str) -> None:
        with contextlib.suppress(PodNotFound):  # removed meanwhile: nothing to report
            inspect = await self.api.inspect_container(container_id)
            self._endings[container_id] = observed.ending_from_inspect(inspect)

    async def _read_pod_ip(self, infra: observed.Instance) -> None:
        with contextlib.suppress(PodNotFound):
            inspect = await self.api.inspect_container(infra.id)
            self.pod_ips[infra.uid] = observed.ip_address(inspect) or None

    def _publish(self, run: PodRun) -> None:
        if self._published.get(run.uid) == run:
            return
        self._published[run.uid] = run
        for callback in list(self.callbacks):
            try:
                callback(run)
            except Exception:
                logger.exception("an on_change callback failed for pod uid %s", run.uid)

    # ------------------------------------------------------------ refreshing

    def mark(self, uid: str) -> None:
        self._dirty.add(uid)
        self._wake.set()

    def mark_all(self) -> None:
        self._dirty_all = True
        self._wake.set()

    async def _refresher(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(DEBOUNCE)  # Podman writes events in bursts: take them together
            self._wake.clear()
            everything, uids = self._dirty_all, self._dirty
            self._dirty_all, self._dirty = False, set()
            try:
                if everything:
                    await self._refresh(None, None)
                elif len(uids) == 1:
                    await self._refresh(next(iter(uids)), uids)
                elif uids:
                    await self._refresh(None, uids)
            except Exception as exc:
                if isinstance(exc, BackendError):
                    logger.warning("refreshing pod status failed: %s", exc)
                else:
                    logger.exception("refreshing pod status failed")
                await asyncio.sleep(RETRY_PAUSE)
                self._dirty_all = self._dirty_all or everything
                self._dirty |= uids
                self._wake.set()

    async def _refresh(self, uid: str | None, only: set[str] | None) -> None:
        pods = await self.observe(uid)
        now = time.time()
        for pod_uid in only if only is not None else set(pods) | set(self._published):
            pod = pods.get(pod_uid)
            if pod is None:
                self.forget(pod_uid)
                continue
            if pod_uid in self._deleting:
                continue
            ip = self.pod_ips.get(pod_uid)
            run = status.pod_run(
                pod,
                now=now,
                delay=self.delay,
                pod_ip=ip,
                sandbox_error=self._sandbox_failures.get(pod_uid, (0, 0.0, ""))[2],
            )
            self._publish(run)
            plan = progress.plan(pod, now=now, delay=self.delay)
            if plan.immediate:
                self.kick(pod_uid)
            elif plan.wake_at is not None:
                self._schedule(pod_uid, plan.wake_at)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            self.mark_all()

    async def _watch_events(self) -> None:
        failures = 0  # since the stream last connected
        while True:
            delay = backoff(failures, first=EVENTS_BACKOFF_FIRST, cap=EVENTS_BACKOFF_MAX)
            try:
                async with self.api.events(
                    labels={spec.NODE: self.node}, actions=EVENT_ACTIONS
                ) as stream:
                    failures, delay = 0, EVENTS_BACKOFF_FIRST
                    self.mark_all()  # whatever happened while we were not listening
                    async for event in stream:
                        attributes = (event.get("Actor") or {}).get("Attributes") or {}
                        uid = attributes.get(spec.UID)
                        if uid and attributes.get(spec.NODE) == self.node:
                            self.mark(uid)
                logger.warning("the Podman event stream ended; reconnecting")
            except BackendError as exc:
                logger.warning("Podman event stream: %s; reconnecting in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            failures += 1

    # ------------------------------------------------------------ acting

    def kick(self, uid: str) -> None:
        """Act on the pod now, or right after the action already under way."""
        if self._closing or uid in self._deleting:
            return
        self._acting.mark(uid)

    def _schedule(self, uid: str, at: float) -> None:
        """Act on the pod at ``at`` (epoch seconds), unless an earlier wake-up is set."""
        delay = max(at - time.time(), 0.0) + TIMER_SLACK
        self._acting.later(uid, delay, sooner_only=True)

    async def act(self, uid: str) -> None:
        """Do what the pod needs next, judged from a fresh look under the pod's lock."""
        async with self.lock(uid):
            if uid in self._deleting:
                return
            pod = (await self.observe(uid)).get(uid)
            if pod is None:
                return
            plan = progress.plan(pod, now=time.time(), delay=self.delay)
            for old in plan.remove:
                with contextlib.suppress(PodNotFound):
                    await self.api.remove_container(old.id)
            if plan.stop_all:
                where = f"{pod.namespace}/{pod.name}"
                logger.info("pod %s (uid %s) passed its active deadline: stopping it", where, uid)
                await self.api.stop_pod(pod.pod, grace_seconds=pod.grace_seconds)
            failed = False
            _, retry_at, _ = self._sandbox_failures.get(uid, (0, 0.0, ""))
            waiting = bool(plan.start) and retry_at > time.time()  # its sandbox failed
            if waiting:
                self._schedule(uid, retry_at)
            for instance in () if waiting else plan.start:
                failed |= not await self._start(pod, instance.id, instance.container)
            for history in plan.restart:
                failed |= not await self._restart(pod, history)
            if plan.wake_at is not None:
                self._schedule(uid, plan.wake_at)
        if failed:  # no event tells of a start that never happened
            self.mark(uid)

    async def _start(self, pod: observed.PodState, container_id: str, container: str) -> bool:
        """Start one container; False when it could not start (it then counts as ended).
        A sandbox that failed is not the container's failure: it is retried."""
        where = f"{pod.namespace}/{pod.name}"
        try:
            await self.api.start_container(container_id)
        except (BackendUnavailable, PodNotFound):
            raise
        except BackendError as exc:
            if SANDBOX_FAILED in str(exc) and not any(i.running for i in pod.instances):
                await self._sandbox_failed(pod, exc)
                return True
            logger.warning("pod %s: container %s could not start: %s", where, container, exc)
            self._start_errors[container_id] = (str(exc), datetime.now(UTC))
            return False
        self._sandbox_failures.pop(pod.uid, None)
        logger.debug("pod %s: started container %s", where, container)
        return True

    def sandbox_errors(self) -> dict[str, str]:
        """Why each pod's sandbox last failed, for the pods whose start is being retried."""
        return {uid: why for uid, (_, _, why) in self._sandbox_failures.items()}

    async def _sandbox_failed(self, pod: observed.PodState, exc: BackendError) -> None:
        """As the kubelet does after a failed sandbox: the pod stays Pending while its
        sandbox is torn down (stopping the Podman pod releases its network, and so its
        IP) and made again after a back-off."""
        failures, _, _ = self._sandbox_failures.get(pod.uid, (0, 0.0, ""))
        delay = backoff(failures, first=SANDBOX_BACKOFF_FIRST, cap=SANDBOX_BACKOFF_MAX)
        self._sandbox_failures[pod.uid] = (failures + 1, time.time() + delay, str(exc))
        logger.warning(
            "pod %s/%s (uid %s): its sandbox, Podman pod %s's infra container, did not "
            "start: %s; tearing it down and starting again in %.0fs",
            pod.namespace,
            pod.name,
            pod.uid,
            pod.pod,
            exc,
            delay,
        )
        with contextlib.suppress(PodNotFound):
            await self.api.stop_pod(pod.pod, grace_seconds=0)
        self._schedule(pod.uid, time.time() + delay)

    async def _restart(self, pod: observed.PodState, history: observed.History) -> bool:
        where = f"{pod.namespace}/{pod.name}"
        bodies = self._specs.get(pod.uid)
        pod_dir = volumes.pod_dir(self.state_dir, pod.uid)
        if bodies is None:
            bodies = await asyncio.to_thread(volumes.load_specs, pod_dir)
            if bodies is not None:
                self._specs[pod.uid] = bodies
        body = (bodies or {}).get(history.name)
        if body is None:
            if (pod.uid, history.name) in self._specless:
                return True
            self._specless.add((pod.uid, history.name))
            logger.error(
                "pod %s (uid %s): the spec of container %s is missing from %s; it cannot restart",
                where,
                pod.uid,
                history.name,
                pod_dir,
            )
            return True
        count = history.current.restart_count + 1
        try:
            container_id = await self.api.create_container(
                spec.restarted(body, restart_count=count)
            )
        except (BackendUnavailable, PodNotFound):
            raise
        except BackendError as exc:
            logger.warning(
                "pod %s: container %s cannot be made again: %s", where, history.name, exc
            )
            return False
        logger.info("pod %s: restarting container %s (restart %d)", where, history.name, count)
        return await self._start(pod, container_id, history.name)
