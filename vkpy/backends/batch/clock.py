"""The two clocks of a batch backend: when to read the status files, when the queue.

The status files are cheap (the filesystem only) and read at every listing, which the
agent asks for at the backend's ``poll_seconds`` (``status_read_seconds``), while any
pod starts, runs or stops; every ``quiet`` seconds while every pod only waits in the
queue (`Pace`). The queue (``squeue``, ``condor_q``) costs the scheduler an RPC: it is read
every ``interval`` seconds, sooner (once) when a file read shows what only the queue
can explain, and never twice within ``floor`` seconds, whatever happens: the site's
``min_queue_interval_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class QueueClock:
    """When the queue may and should be read next; see the module docstring."""

    interval: float
    floor: float
    now: Callable[[], float] = field(default=time.monotonic, repr=False)
    last: float | None = None  # when the last read (or attempt) began
    asked: str = ""  # why a sooner read is wanted; empty: none is
    reads: int = 0

    def due(self) -> bool:
        if self.last is None:
            return True
        since = self.now() - self.last
        if since < self.floor:
            return False
        return since >= max(self.interval, self.floor) or bool(self.asked)

    def ask(self, why: str) -> None:
        """Read the queue at the next moment the floor allows."""
        if not self.asked:
            self.asked = why

    def began(self) -> None:
        """A read begins (counted even if it fails: a failing scheduler is not hammered)."""
        self.last = self.now()
        self.asked = ""
        self.reads += 1


@dataclass(frozen=True)
class Pace:
    """How slowly the status files are read while every pod only waits in the queue."""

    quiet: float = 10.0
    starting: float = 60.0  # a pod submitted this recently counts as starting
