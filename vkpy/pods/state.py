"""What the agent knows of one pod: its stage with the backend and what its status says.

`Stage` is the pod's lifecycle with the backend, changed only by `Tracked.move`, which
refuses any step back: a pod the backend had is never created again. What the status is
computed from (the backend's record, the start, a waiting reason, a failure) is one
`Observation`, kept up to date here and read as it is by every status write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any

from vkpy.backend import PodRun, Waiting
from vkpy.jsontypes import JSON
from vkpy.podstatus import Observation

logger = logging.getLogger("vkpy.pods")


class Stage(Enum):
    NEW = "new"  # not in the backend yet: create it, unless it failed
    IN_BACKEND = "in-backend"  # created or adopted: the backend has it
    OUT = "out"  # out of the backend again (stopped by us, or lost): never created again
    DELETED = "deleted"  # the final grace-0 delete was sent; its DELETED event ends it


_MOVES = {
    Stage.NEW: {Stage.IN_BACKEND, Stage.DELETED},
    Stage.IN_BACKEND: {Stage.OUT},
    Stage.OUT: {Stage.DELETED},
    Stage.DELETED: set(),
}


@dataclass
class Tracked:
    """One pod: the newest API object, its stage, and what its status is computed from."""

    pod: JSON | None  # newest API object; None once it is gone from the API
    stage: Stage = Stage.NEW
    seen: Observation = field(default_factory=Observation)
    written: JSON | None = None  # the status last written
    attempts: int = 0  # failures in a row, for the back-off
    # A create was cut short (the backend unreachable, or an unexpected error): part of
    # the pod may be in the backend although it never reached IN_BACKEND.
    unsure: bool = False
    # How many times it moved (time.monotonic() is too coarse to order a move against a
    # listing on every system): a listing begun before the last move predates it.
    moves: int = 0
    announced: set[str] = field(default_factory=set)  # events already emitted
    # Kept from the first API object (or backend record) seen, so that every log line,
    # the last one after the API object is gone included, names the pod.
    namespace: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        self.remember_name()

    def move(self, to: Stage) -> None:
        """The one place a stage changes."""
        if to not in _MOVES[self.stage]:
            raise ValueError(f"pod {self.namespace}/{self.name}: no move {self.stage} -> {to}")
        self.stage = to
        self.moves += 1

    def observe(self, run: PodRun | None) -> None:
        self.seen = replace(self.seen, run=run)
        self.remember_name()

    def fail(self, reason: str, message: str) -> None:
        """The pod failed for good; the first reason given stays."""
        if self.seen.failure is None:
            self.seen = replace(self.seen, failure=(reason, message))

    def wait(self, waiting: Waiting | None) -> None:
        self.seen = replace(self.seen, waiting=waiting)

    def start(self, now: datetime) -> None:
        if self.seen.started is None:
            self.seen = replace(self.seen, started=now)

    def remember_name(self) -> None:
        meta = (self.pod or {}).get("metadata") or {}
        run = self.seen.run
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
    run = entry.seen.run
    return PodLog(
        logger,
        {
            "pod_namespace": entry.namespace,
            "pod_name": entry.name,
            "pod_uid": uid,
            "job_id": run.job_id if run else "",
        },
    )
