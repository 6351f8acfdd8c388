"""What a pod needs next, from what Podman holds for it. Pure functions.

The kubelet's rules, applied to a `PodState`: init containers one at a time in order,
each must exit 0 before the next starts (a failure under restartPolicy Never ends the
pod; otherwise the init container runs again after the back-off); then every app
container at once, each restarted per the restart policy after the back-off. Past
activeDeadlineSeconds, everything still running is stopped and nothing restarts. A pod
whose containers were not all created (a create cut short) never starts.

Everything is derived from Podman's state and the labels, never from memory, so a
backend that restarts (or a second one adopting the pods) carries on where the first
left off: a back-off runs from the ended instance's finish time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from vkpy.backend import RestartPolicy, should_restart
from vkpy.backends.podman.observed import History, Instance, PodState

InitProgress = Literal["done", "active", "failed"]


def wants_restart(history: History, policy: RestartPolicy) -> bool:
    """Whether the container's ended instance is to be followed by another one."""
    current = history.current
    if not current.ended:
        return False
    if current.init:  # an init container runs until it succeeds, unless the policy is Never
        return policy != "Never" and current.exit_code != 0
    return should_restart(policy, current.exit_code)


def init_progress(pod: PodState) -> tuple[InitProgress, History | None]:
    """Where the init containers are: all done, one active (with it), or one failed for good."""
    for history in pod.init:
        current = history.current
        if current.ended and current.exit_code == 0:
            continue
        if current.ended and not wants_restart(history, pod.policy):
            return "failed", history
        return "active", history
    return "done", None


def finished_at(pod: PodState) -> tuple[bool, float | None]:
    """Whether the pod has nothing left to run, and (if known) since when."""
    progress, failed = init_progress(pod)
    if progress == "failed" and failed is not None:
        moment = failed.current.finished_at
        return True, moment.timestamp() if moment else None
    if progress == "active":
        return False, None
    times: list[float] = []
    for history in pod.app:
        if not history.current.ended or wants_restart(history, pod.policy):
            return False, None
        if history.current.finished_at:
            times.append(history.current.finished_at.timestamp())
    return True, max(times) if times else None


def deadline_exceeded(pod: PodState, now: float) -> bool:
    """Past activeDeadlineSeconds, unless the pod had finished before the deadline."""
    if pod.deadline is None or now < pod.deadline:
        return False
    finished, when = finished_at(pod)
    return not (finished and (when is None or when < pod.deadline))


def restart_due(history: History, delay: Callable[[int], float], now: float) -> float:
    """When the next instance of an ended container may start (the kubelet's back-off)."""
    ended = history.current.finished_at
    base = ended.timestamp() if ended else now
    return base + delay(history.current.restart_count)


@dataclass(frozen=True)
class Plan:
    start: tuple[Instance, ...] = ()  # created instances to start now
    restart: tuple[History, ...] = ()  # containers whose next instance is due now
    remove: tuple[Instance, ...] = ()  # instances older than the one before the newest
    stop_all: bool = False  # the deadline passed while the pod was active
    wake_at: float | None = None  # look again then: a back-off ends, the deadline comes

    @property
    def immediate(self) -> bool:
        return bool(self.start or self.restart or self.remove or self.stop_all)


def _earliest(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


def plan(pod: PodState, *, now: float, delay: Callable[[int], float]) -> Plan:
    remove = tuple(old for h in (*pod.init, *pod.app) for old in h.older)
    if deadline_exceeded(pod, now):
        running = any(i.running for i in pod.instances)
        return Plan(remove=remove, stop_all=running)
    if not pod.complete:  # created half-way: never run a pod missing containers
        return Plan(remove=remove)
    finished, _ = finished_at(pod)
    wake_at = float(pod.deadline) if pod.deadline is not None and not finished else None

    start: list[Instance] = []
    restart: list[History] = []

    def advance(history: History) -> None:
        nonlocal wake_at, remove
        current = history.current
        if current.not_started:
            start.append(current)
        elif wants_restart(history, pod.policy):
            due = restart_due(history, delay, now)
            if due <= now:
                restart.append(history)
                if history.previous is not None:  # once the next one exists, it is older
                    remove = (*remove, history.previous)
            else:
                wake_at = _earliest(wake_at, due)

    progress, active = init_progress(pod)
    if progress == "active" and active is not None:
        advance(active)
    elif progress == "done":
        for history in pod.app:
            advance(history)
    return Plan(start=tuple(start), restart=tuple(restart), remove=remove, wake_at=wake_at)
