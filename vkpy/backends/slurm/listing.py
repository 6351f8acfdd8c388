"""What list() knows of the node's pods, and the reading that keeps it current.

Every listing reads the status files of every pod not finished yet, by what changed
(the first listing finds them all: the work directories are the record of what the
node holds). The queue is read on its own, slower clock (`clock`): one ``squeue`` for
the node's jobs, and one ``sacct`` for jobs that left the queue without the script
recording their end; between reads, its last answer stands where the files are not
newer. A finished pod's record is kept and never read again. A pod the script has
stopped, or that ended with a failure, while Slurm still finishes its job keeps its
last record until Slurm says how the job ended (the queue is asked sooner for it); one
whose containers all ended 0 on their own is done at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from vkpy.backend import PodRun
from vkpy.backends.batch import records, report
from vkpy.backends.batch.book import Known, PodBook
from vkpy.backends.batch.clock import Pace, QueueClock
from vkpy.backends.batch.state import Phase
from vkpy.backends.slurm import queue
from vkpy.backends.slurm.queue import JobRecord
from vkpy.backends.slurm.state import JobState, ending
from vkpy.errors import BackendUnavailable
from vkpy.transport import Runner

SYSTEM = "Slurm"
# Queue reads a stopped or signalled job with no record anywhere is held for (a time
# limit, a cancel, memory): accounting writes a job down when Slurm has finished it,
# which may be after it left the queue. Other failures are held for one read.
WORD_READS = 2


class Listing(PodBook):
    """The node's pods as the last listing saw them; see the module docstring."""

    system = SYSTEM
    logger = logging.getLogger("vkpy.backends.slurm")

    def __init__(
        self,
        runner: Runner,
        *,
        node: str,
        accounting: str,
        federation: bool = False,
        clock: QueueClock | None = None,
        pace: Pace | None = None,
    ) -> None:
        super().__init__(runner, node=node, clock=clock, pace=pace)
        self.accounting = accounting
        self.federation = federation
        self.jobs: dict[str, JobRecord] = {}  # the last squeue, by pod UID
        self.left: dict[str, JobRecord] = {}  # the last sacct, by job id

    async def read_queue(self, files: Mapping[str, records.PodFiles]) -> None:
        """One squeue for the node's jobs, one sacct for those that left the queue."""
        listing = await self.runner.run(
            queue.squeue_argv(federation=self.federation), idempotent=True
        )
        if not listing.ok:
            raise BackendUnavailable(f"squeue failed: {listing.describe()}")
        jobs = queue.parse_squeue(listing.text, self.node)
        for uid, job in jobs.items():
            self.learn(uid, job.job_id)
        self.left = await self._accounting(files, jobs)
        self.jobs = jobs

    def runs(self, files: Mapping[str, records.PodFiles]) -> dict[str, PodRun]:
        return self._records(files, self.jobs, self.left)

    async def _accounting(
        self, files: Mapping[str, records.PodFiles], jobs: Mapping[str, JobRecord]
    ) -> dict[str, JobRecord]:
        """Slurm's records of submitted jobs that left the queue without a recorded end,
        or whose script recorded a stop or a failure that only Slurm can explain."""
        if self.accounting == "none":
            return {}
        wanted = []
        for uid, found in files.items():
            in_queue = jobs.get(uid)
            if not found.job_id or (in_queue is not None and in_queue.job_id == found.job_id):
                continue
            if records.job_events(found.job).ended is None or not records.ended_well(found):
                wanted.append(found.job_id)
        if not wanted:
            return {}
        answer = await self.runner.run(
            queue.sacct_argv(wanted, jobcomp=self.accounting == "jobcomp"),
            idempotent=True,
        )
        if not answer.ok:
            self.logger.warning("sacct failed: %s", answer.describe())
            return {}
        return queue.parse_sacct(answer.text)

    def _records(
        self,
        files: Mapping[str, records.PodFiles],
        jobs: Mapping[str, JobRecord],
        left: Mapping[str, JobRecord],
    ) -> dict[str, PodRun]:
        return self.collect(
            files,
            jobs,
            lambda uid, known, found: self._record(
                uid, known, found, _slurm_record(found, jobs.get(uid), left)
            ),
        )

    def _record(
        self, uid: str, known: Known, found: records.PodFiles, record: JobRecord | None
    ) -> PodRun | None:
        said = self._current(uid, found, record)
        state = said.state if said is not None else None
        if known.last is not None and self.awaits_word(known, found, said):
            self.clock.ask(f"how Slurm ended job {found.job_id}")
            return known.last  # held until Slurm says how the job ended
        if _ended_unseen(state, found) and not known.rechecked:
            # The files were read before the queue: the job may have ended in between,
            # its last lines unread. Read them once more before believing it was killed.
            known.rechecked = True
            if known.last is not None:
                return known.last
            said, record = None, None
        self.unexplained(uid, known, found)
        lost = self.lost(uid, known, found, on_record=record is not None)
        return self.conclude(uid, known, found, job_view(found, said, lost=lost))

    def settled(self, uid: str) -> bool:
        """The pod's record is final, and its script recorded its end after stopping
        its containers (Slurm then completes the job: nothing to cancel), or the last
        squeue showed its job over."""
        known = self.known.get(uid)
        if known is None or known.final is None:
            return False
        if known.script_ended:
            return True
        record = self.jobs.get(uid)
        return record is not None and record.state.terminal and record.job_id == known.job_id

    def awaits_word(self, known: Known, found: records.PodFiles, said: JobRecord | None) -> bool:
        """Whether the script stopped, or ended with a failure, and only Slurm can say
        why (cancelled, a time limit, memory): held while the last squeue shows the job
        unfinished, or, when neither the queue nor accounting has a record of it (the
        job left the queue before accounting wrote it down), for one more queue read
        (`WORD_READS` when it was signalled); after that, the files say what is known."""
        events = records.job_events(found.job)
        if events.ended is None and events.stopped is None:
            known.word_from = None
            return False
        if records.ended_well(found):
            return False
        if said is not None:
            return settling(found, said.state)
        if known.word_from is None:
            known.word_from = self.clock.reads
        signalled = events.stopped is not None or (events.exit_code or 0) > 128
        reads = WORD_READS if signalled and self.accounting != "none" else 1
        return self.clock.reads - known.word_from < reads

    def _current(
        self, uid: str, found: records.PodFiles, record: JobRecord | None
    ) -> JobRecord | None:
        """The queue's record, unless the files, read since, say more: the job began
        after a squeue that showed it waiting, or ended with every container's 0."""
        if record is None or record.state.terminal:
            return record
        if record.state.phase is Phase.WAITING and self.began_since(uid, found):
            return None
        if records.ended_well(found):
            return None
        return record


def job_view(
    found: records.PodFiles, record: JobRecord | None, *, lost: bool = False
) -> report.JobView:
    """The job as Slurm's record says (in the batch layer's words), else as the
    script's own lines do."""
    said = None
    if record is not None:
        queued = f"{SYSTEM} job {found.job_id} is queued: {record.reason}"
        said = report.JobView(
            found.job_id,
            record.state.phase,
            SYSTEM,
            ending=ending(record.state),
            reason=queued if record.reason else "",
            exit_code=record.exit_code,
            pending=not record.state.terminal,
        )
    return report.job_view(found, said, system=SYSTEM, lost=lost)


def settling(files: records.PodFiles, state: JobState | None) -> bool:
    """Whether the script has stopped or ended but Slurm still runs the job: until Slurm
    says how the job ended (a time limit, memory, a cancel), the cause is unknown, and a
    pod reported terminal now could not be corrected later."""
    if state is None or state.terminal:
        return False
    events = records.job_events(files.job)
    return events.ended is not None or events.stopped is not None


def _ended_unseen(state: JobState | None, found: records.PodFiles) -> bool:
    """Slurm says the job is over, and the script's files do not say it ended."""
    return state is not None and state.terminal and records.job_events(found.job).ended is None


def _slurm_record(
    found: records.PodFiles, queued: JobRecord | None, left: Mapping[str, JobRecord]
) -> JobRecord | None:
    """Slurm's record of the pod's job: the queue's, unless it is an older job of the
    pod; else accounting's."""
    if queued is not None and (not found.job_id or queued.job_id == found.job_id):
        return queued
    return left.get(found.job_id) if found.job_id else None
