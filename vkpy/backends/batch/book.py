"""`PodBook`: what a job backend remembers of its node's pods between listings.

Every batch system's listing builds on it: the pods create() submitted, the pods
delete() removed (so a late listing never revives them), and the status files read
once in full on the first listing (the work directories are the record of what the
node holds) and then only for pods not finished yet.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

from vkpy.backend import PodRun
from vkpy.backends.batch import records, report, workdir
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.podlog import pod_log
from vkpy.transport import Runner

LOST_AFTER_SECONDS = 60.0  # a submitted job no record knows of counts as lost after this
FORGET_DELETED = 10000  # deleted UIDs remembered, so a late listing never revives them


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


class PodBook(abc.ABC):
    """The node's pods as the last listing saw them; subclasses do the listing."""

    system: str  # "Slurm", "HTCondor": for messages
    logger: logging.Logger  # the backend's: records about its pods go out under it

    def __init__(self, runner: Runner, *, node: str) -> None:
        self.runner = runner
        self.node = node
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
        known = self.known.setdefault(uid, Known())
        known.job_id, known.namespace, known.name = job_id, namespace, name

    def forget(self, uid: str) -> None:
        """A pod delete() removed: later listings never report it again."""
        self.known.pop(uid, None)
        self.deleted[uid] = None
        while len(self.deleted) > FORGET_DELETED:
            self.deleted.popitem(last=False)

    def learn(self, uid: str, job_id: str) -> None:
        """A job the queue shows for a pod not known yet (its files come next)."""
        if uid not in self.known and uid not in self.deleted:
            self.known[uid] = Known(job_id=job_id)

    async def read_files(self, layout: Layout) -> dict[str, records.PodFiles]:
        """Status files: every pod's on the first call, then unfinished pods' only."""
        if not self._discovered:
            files = await workdir.read_status(self.runner, layout, None)
            for uid in files:
                if uid not in self.deleted:
                    self.known.setdefault(uid, Known())
            self._discovered = True
            return files
        pending = [uid for uid, known in self.known.items() if known.final is None]
        return await workdir.read_status(self.runner, layout, pending)

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
            if events.began is not None and events.ended is None:
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

    @abc.abstractmethod
    async def list(self, layout: Layout) -> Mapping[str, PodRun]:
        """Every pod of the node, from its files and the batch system's records."""
