"""`PodBook`: what a job backend remembers of its node's pods between listings.

Every batch system's listing builds on it: the pods create() submitted, the pods
delete() removed (so a late listing never revives them), and the status files read
once in full on the first listing (the work directories are the record of what the
node holds) and then, by what changed (`tail`), only for pods not finished yet.

A listing runs on two clocks (`clock`): the files at every call (the agent calls at
the fast pace; while every pod only waits in the queue, the last answer is given again
until the quiet pace is due), the queue only when its own clock says so, the
subclass's `listing` deciding from both.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field

from vkpy.backend import PodRun
from vkpy.backends.batch import records, report
from vkpy.backends.batch.clock import Pace, QueueClock
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.podlog import pod_log
from vkpy.backends.batch.tail import StatusTail
from vkpy.errors import BackendUnavailable
from vkpy.transport import Runner

LOST_AFTER_SECONDS = 60.0  # a submitted job no record knows of counts as lost after this
FORGET_DELETED = 10000  # deleted UIDs remembered, so a late listing never revives them
UNBEGUN_ASK_SECONDS = 5.0  # a submitted job that has not begun after this: ask the queue why


@dataclass
class Known:
    """What the backend remembers of a pod between listings."""

    job_id: str = ""
    namespace: str = ""
    name: str = ""
    final: PodRun | None = None  # the record once it can no longer change
    last: PodRun | None = None  # the record the last listing returned
    missing_since: float | None = None  # when the batch system first had no record of its job
    without_files: int = 0  # listings in a row that found no status files
    rechecked: bool = False  # its files were read again after the job was said to end
    seen_at: float = field(default_factory=time.monotonic)  # when the book first knew of it
    asked: bool = False  # the queue was asked (once) why its job has not begun
    word_from: int | None = None  # queue reads when its script was seen stopped or failed
    script_ended: bool = False  # final, and its script recorded its end: nothing runs


class PodBook(abc.ABC):
    """The node's pods as the last listing saw them; subclasses do the listing."""

    system: str  # "Slurm", "HTCondor": for messages
    logger: logging.Logger  # the backend's: records about its pods go out under it

    def __init__(
        self,
        runner: Runner,
        *,
        node: str,
        clock: QueueClock | None = None,
        pace: Pace | None = None,
    ) -> None:
        self.runner = runner
        self.node = node
        self.clock = clock or QueueClock(interval=30.0, floor=10.0)
        self.pace = pace or Pace()
        self.tail = StatusTail()
        self._last: dict[str, PodRun] | None = None  # the last listing's answer
        self._last_at = 0.0
        self._busy = True  # a pod starts, runs or stops: the files are read at every call
        self.begins: dict[str, int] = {}  # "begin" records each pod had at the last queue read
        self.failure: BackendUnavailable | None = None  # the last queue read's, until one works
        self.known: dict[str, Known] = {}
        self.deleted: OrderedDict[str, None] = OrderedDict()
        self._discovered = False
        self._lock = asyncio.Lock()
        # Pods whose job ended without its script's own end record: killed (SIGKILL, a
        # node failure) before it could stop its containers, which may still run.
        self.unswept: set[str] = set()

    def take_unswept(self) -> list[str]:
        taken = sorted(self.unswept)
        self.unswept.clear()
        return taken

    def remember(self, uid: str, job_id: str, *, namespace: str, name: str) -> None:
        """A pod create() submitted (or found submitted)."""
        self.deleted.pop(uid, None)
        self._busy = True
        known = self.known.setdefault(uid, Known())
        known.job_id, known.namespace, known.name = job_id, namespace, name

    def forget(self, uid: str) -> None:
        """A pod delete() removed: later listings never report it again."""
        self.known.pop(uid, None)
        self.tail.forget(uid)
        if self._last is not None:
            self._last.pop(uid, None)
        self.deleted[uid] = None
        while len(self.deleted) > FORGET_DELETED:
            self.deleted.popitem(last=False)

    def learn(self, uid: str, job_id: str) -> None:
        """A job the queue shows for a pod not known yet (its files come next)."""
        if uid not in self.known and uid not in self.deleted:
            self.known[uid] = Known(job_id=job_id)

    async def read_files(self, layout: Layout) -> dict[str, records.PodFiles]:
        """Status files: every pod's on the first call, then unfinished pods' only, by
        what changed (`tail`)."""
        if not self._discovered:
            files = await self.tail.discover(self.runner, layout)
            for uid in files:
                if uid not in self.deleted:
                    self.known.setdefault(uid, Known())
            self._discovered = True
            return files
        pending = [uid for uid, known in self.known.items() if known.final is None]
        return await self.tail.read(self.runner, layout, pending)

    async def list(self, layout: Layout) -> Mapping[str, PodRun]:
        """Every pod of the node (`listing`), on the pace of `Pace`."""
        async with self._lock:
            now = time.monotonic()
            if self._last is not None and not self._busy and now - self._last_at < self.pace.quiet:
                return dict(self._last)
            files = await self.read_files(layout)
            runs = await self.listing(layout, files)
            self._busy = self.busy(files)
            self._last, self._last_at = dict(runs), now
            return runs

    def busy(self, files: Mapping[str, records.PodFiles]) -> bool:
        """Whether any unfinished pod starts (submitted lately), runs or stops."""
        now = time.monotonic()
        for uid, known in self.known.items():
            if known.final is not None or uid in self.deleted:
                continue
            if now - known.seen_at < self.pace.starting:
                return True
            found = files.get(uid)
            if found is not None and records.job_events(found.job).began is not None:
                return True
        return False

    def settled(self, uid: str) -> bool:
        """Whether nothing of the pod is left to stop, without a queue query to say so
        (the batch system's own rule: HTCondor keeps a held job queued, so never)."""
        return False

    def unexplained(self, uid: str, known: Known, found: records.PodFiles) -> None:
        """A submitted job that has not begun for a while: ask the queue why, once."""
        if known.asked or not found.job_id or records.job_events(found.job).began is not None:
            return
        if time.monotonic() - known.seen_at >= UNBEGUN_ASK_SECONDS:
            known.asked = True
            self.clock.ask(f"job {found.job_id} has not begun")

    def collect(
        self,
        files: Mapping[str, records.PodFiles],
        queued: Container[str],
        record: Callable[[str, Known, records.PodFiles], PodRun | None],
    ) -> dict[str, PodRun]:
        """Every known pod's record: kept if final, else ``record`` over its files. A
        pod whose files stay missing and whose job is not ``queued`` is forgotten."""
        runs: dict[str, PodRun] = {}
        vanished = []
        for uid, known in self.known.items():
            if uid in self.deleted:
                continue
            if known.final is not None:
                runs[uid] = known.final
                continue
            found = files.get(uid)
            if found is None:
                # No files yet (a job just found in the queue), or none any more.
                known.without_files += 1
                if known.without_files > 1 and uid not in queued:
                    vanished.append(uid)
                continue
            known.without_files = 0
            if found.meta is not None:
                known.namespace, known.name = found.meta.namespace, found.meta.name
            known.job_id = found.job_id or known.job_id
            run = record(uid, known, found)
            if run is not None:
                runs[uid] = run
        for uid in vanished:
            self.logger.warning("pod uid %s: its work directory is gone; forgetting it", uid)
            del self.known[uid]
        return runs

    def conclude(
        self, uid: str, known: Known, found: records.PodFiles, view: report.JobView
    ) -> PodRun | None:
        """The pod's record from its files and job; remembered, and kept for good once
        it can no longer change."""
        run = report.pod_run(uid, found, view)
        if run is None:
            return None
        known.last = run
        if report.finished(run, view):
            known.final = run
            events = records.job_events(found.job)
            known.script_ended = events.ended is not None
            if events.began is not None and events.ended is None:
                pod_log(self.logger, uid, known.namespace, known.name, view.job_id).info(
                    "%s job ended without its script's end record: removing what is left "
                    "of its containers",
                    self.system,
                )
                self.unswept.add(uid)
        return run

    def lost(self, uid: str, known: Known, found: records.PodFiles, *, on_record: bool) -> bool:
        """Whether a submitted job the batch system has no record of (``on_record``
        False) has been missing long enough to report its containers lost."""
        if on_record or not found.job_id or records.job_events(found.job).ended:
            known.missing_since = None
            return False
        now = time.monotonic()
        known.missing_since = known.missing_since or now
        if now - known.missing_since <= LOST_AFTER_SECONDS:
            return False
        pod_log(self.logger, uid, known.namespace, known.name, found.job_id).warning(
            "%s has no record of job %s: reporting its containers lost", self.system, found.job_id
        )
        return True

    async def listing(
        self, layout: Layout, files: Mapping[str, records.PodFiles]
    ) -> dict[str, PodRun]:
        """Every pod of the node: its files just read, and the queue when its clock says
        so (a failed read is tried again at the floor, and raised until one works)."""
        if self.clock.due():
            self.clock.began()
            try:
                await self.read_queue(files)
            except BackendUnavailable as exc:
                self.failure = exc
                self.clock.ask("the last queue read failed")
                raise
            self.failure = None
            self.begins = {uid: records.begins(found.job) for uid, found in files.items()}
        elif self.failure is not None:
            raise self.failure
        return self.runs(files)

    def began_since(self, uid: str, found: records.PodFiles) -> bool:
        """Whether the job began (again) after the last queue read."""
        return records.begins(found.job) > self.begins.get(uid, 0)

    @abc.abstractmethod
    async def read_queue(self, files: Mapping[str, records.PodFiles]) -> None:
        """Read the batch system's records of the node's jobs (BackendUnavailable when
        it cannot say)."""

    @abc.abstractmethod
    def runs(self, files: Mapping[str, records.PodFiles]) -> dict[str, PodRun]:
        """Every pod's record from its files and the last queue read."""
