"""What list() knows of the node's pods, and the reading that keeps it current.

One listing is one read of the status files of every pod not finished yet (the first
listing finds them all: the work directories are the record of what the node holds),
one ``squeue`` for the node's jobs, and one ``sacct`` for jobs that left the queue
without the script recording their end. A finished pod's record is kept and never read
again; a pod the script has stopped while Slurm still finishes its job keeps its last
record until Slurm says how the job ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from vkpy.backend import PodRun
from vkpy.backends.slurm import queue, report, workdir
from vkpy.backends.slurm.naming import Layout
from vkpy.backends.slurm.podlog import pod_log
from vkpy.backends.slurm.queue import JobRecord
from vkpy.backends.slurm.state import JobState
from vkpy.errors import BackendUnavailable
from vkpy.transport import Runner

logger = logging.getLogger(__name__)

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
    missing_since: float | None = None  # when Slurm first had no record of its job
    without_files: int = 0  # listings in a row that found no status files
    rechecked: bool = False  # its files were read again after Slurm said the job ended


class Listing:
    """The node's pods as the last listing saw them; see the module docstring."""

    def __init__(self, runner: Runner, *, node: str, accounting: str) -> None:
        self.runner = runner
        self.node = node
        self.accounting = accounting
        self.known: dict[str, Known] = {}
        self.deleted: OrderedDict[str, None] = OrderedDict()
        self._discovered = False
        self._lock = asyncio.Lock()

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

    async def list(self, layout: Layout) -> dict[str, PodRun]:
        """Every pod of the node: one read of the status files, one squeue, one sacct."""
        async with self._lock:
            files = await self._read_files(layout)
            listing = await self.runner.run(queue.squeue_argv(), idempotent=True)
            if not listing.ok:
                raise BackendUnavailable(f"squeue failed: {listing.describe()}")
            jobs = queue.parse_squeue(listing.text, self.node)
            for uid in jobs:
                if uid not in self.known and uid not in self.deleted:
                    self.known[uid] = Known(job_id=jobs[uid].job_id)  # its files come next
            left = await self._accounting(files, jobs)
            return self._records(files, jobs, left)

    async def _read_files(self, layout: Layout) -> dict[str, report.PodFiles]:
        if not self._discovered:
            files = await workdir.read_status(self.runner, layout, None)
            for uid in files:
                if uid not in self.deleted:
                    self.known.setdefault(uid, Known())
            self._discovered = True
            return files
        pending = [uid for uid, known in self.known.items() if known.final is None]
        return await workdir.read_status(self.runner, layout, pending)

    async def _accounting(
        self, files: Mapping[str, report.PodFiles], jobs: Mapping[str, JobRecord]
    ) -> dict[str, JobRecord]:
        """Slurm's records of submitted jobs that left the queue without a recorded end."""
        if self.accounting == "none":
            return {}
        wanted = []
        for uid, found in files.items():
            in_queue = jobs.get(uid)
            if not found.job_id or (in_queue is not None and in_queue.job_id == found.job_id):
                continue
            if report.job_events(found.job).ended is None:
                wanted.append(found.job_id)
        if not wanted:
            return {}
        answer = await self.runner.run(
            queue.sacct_argv(wanted, jobcomp=self.accounting == "jobcomp"),
            idempotent=True,
        )
        if not answer.ok:
            logger.warning("sacct failed: %s", answer.describe())
            return {}
        return queue.parse_sacct(answer.text)

    def _records(
        self,
        files: Mapping[str, report.PodFiles],
        jobs: Mapping[str, JobRecord],
        left: Mapping[str, JobRecord],
    ) -> dict[str, PodRun]:
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
                if known.without_files > 1 and uid not in jobs:
                    vanished.append(uid)
                continue
            known.without_files = 0
            run = self._record(uid, known, found, _slurm_record(found, jobs.get(uid), left))
            if run is not None:
                runs[uid] = run
        for uid in vanished:
            logger.warning("pod uid %s: its work directory is gone; forgetting it", uid)
            del self.known[uid]
        return runs

    def _record(
        self, uid: str, known: Known, found: report.PodFiles, record: JobRecord | None
    ) -> PodRun | None:
        if found.meta is not None:
            known.namespace, known.name = found.meta.namespace, found.meta.name
        known.job_id = found.job_id or known.job_id
        state = record.state if record is not None else None
        if known.last is not None and report.settling(found, state):
            return known.last  # held until Slurm says how the job ended
        if _ended_unseen(state, found) and not known.rechecked:
            # The files were read before the queue: the job may have ended in between,
            # its last lines unread. Read them once more before believing it was killed.
            known.rechecked = True
            if known.last is not None:
                return known.last
            state, record = None, None
        view = report.job_view(
            found,
            state,
            reason=record.reason if record else "",
            exit_code=record.exit_code if record else None,
            lost=self._lost(uid, known, found, record),
        )
        run = report.pod_run(uid, found, view)
        if run is None:
            return None
        known.last = run
        if report.finished(run, view):
            known.final = run
        return run

    def _lost(
        self, uid: str, known: Known, found: report.PodFiles, record: JobRecord | None
    ) -> bool:
        """Whether a submitted job no record knows of has been missing long enough."""
        if record is not None or not found.job_id or report.job_events(found.job).ended:
            known.missing_since = None
            return False
        now = time.monotonic()
        known.missing_since = known.missing_since or now
        if now - known.missing_since <= LOST_AFTER_SECONDS:
            return False
        pod_log(uid, known.namespace, known.name, found.job_id).warning(
            "Slurm has no record of job %s: reporting its containers lost", found.job_id
        )
        return True


def _ended_unseen(state: JobState | None, found: report.PodFiles) -> bool:
    """Slurm says the job is over, and the script's files do not say it ended."""
    return state is not None and state.terminal and report.job_events(found.job).ended is None


def _slurm_record(
    found: report.PodFiles, queued: JobRecord | None, left: Mapping[str, JobRecord]
) -> JobRecord | None:
    """Slurm's record of the pod's job: the queue's, unless it is an older job of the
    pod; else accounting's."""
    if queued is not None and (not found.job_id or queued.job_id == found.job_id):
        return queued
    return left.get(found.job_id) if found.job_id else None
