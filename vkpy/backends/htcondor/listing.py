"""What list() knows of the node's pods, and the reading that keeps it current.

Every listing reads the status files of every pod not finished yet, by what changed
(the first finds them all: the work directories are the record of what the node
holds). The queue is read on its own, slower clock (`clock`): one ``condor_q -json``
for all the node's jobs, and one ``condor_history -json`` for the jobs of unfinished
pods that have left the queue, when there are any; between reads, its last answer
stands where the files are not newer. A finished pod's record is kept and never read
again.

With file transfer the status files come back only when the job ends: while the job
runs and its files say nothing yet, the pod is reported from what HTCondor says: its
first init container (else its app containers) running since the job started. The
job's event log, which the shadow writes on the submit node and the fast clock reads
with the status files, says so within a read of the execute event; ``condor_q``, on its
own clock, says it too, and says why a job waits or was held.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from vkpy.backend import PodRun
from vkpy.backends.batch import records, report
from vkpy.backends.batch.book import Known, PodBook
from vkpy.backends.batch.clock import Pace, QueueClock
from vkpy.backends.batch.state import Phase
from vkpy.backends.htcondor import events, queue, state
from vkpy.backends.htcondor.state import JobState
from vkpy.errors import BackendUnavailable
from vkpy.transport import Runner

SYSTEM = "HTCondor"
Ads = Mapping[str, tuple[Mapping[str, Any], ...]]


class Listing(PodBook):
    """The node's pods as the last listing saw them; see the module docstring."""

    system = SYSTEM
    logger = logging.getLogger("vkpy.backends.htcondor")

    def __init__(
        self,
        runner: Runner,
        *,
        node: str,
        transfer: bool = False,
        clock: QueueClock | None = None,
        pace: Pace | None = None,
    ) -> None:
        super().__init__(runner, node=node, clock=clock, pace=pace)
        self.transfer = transfer
        self.queued: Ads = {}  # the last condor_q, by pod UID
        self.done: Ads = {}  # the last condor_history

    def runs(self, files: Mapping[str, records.PodFiles]) -> dict[str, PodRun]:
        return self._records(files, self.queued, self.done)

    async def read_queue(self, files: Mapping[str, records.PodFiles]) -> None:
        """One condor_q, and at most one condor_history."""
        queued = await self._ads(queue.condor_q_argv(self.node), "condor_q")
        left = self._left_the_queue(files, queued)
        done = (
            await self._ads(queue.condor_history_argv(self.node, left), "condor_history")
            if left
            else {}
        )
        for uid, ads in queued.items():
            self.learn(uid, state.job_id(ads[0]))
        self.queued, self.done = queued, done

    def _left_the_queue(
        self, files: Mapping[str, records.PodFiles], queued: Ads
    ) -> tuple[str, ...]:
        """Jobs of unfinished pods that condor_q no longer shows: only their history is read."""
        jobs = ((uid, files.get(uid), known) for uid, known in self.known.items())
        return tuple(
            job_id
            for uid, found, known in jobs
            if known.final is None
            and uid not in queued
            and (job_id := (found.job_id if found is not None else "") or known.job_id)
        )

    async def _ads(self, argv: Sequence[str], what: str) -> Ads:
        answer = await self.runner.run(argv, idempotent=True)
        if not answer.ok:
            raise BackendUnavailable(f"{what} failed: {answer.describe()}")
        return state.by_pod(queue.parse_ads(answer.text))

    def _records(
        self, files: Mapping[str, records.PodFiles], queued: Ads, done: Ads
    ) -> dict[str, PodRun]:
        return self.collect(
            files,
            queued,
            lambda uid, known, found: self._record(
                uid, known, found, _job(found.job_id, queued.get(uid, ()), done.get(uid, ()))
            ),
        )

    def _record(
        self, uid: str, known: Known, found: records.PodFiles, job: JobState | None
    ) -> PodRun | None:
        on_record = job is not None
        waiting = job is not None and not job.terminal and job.phase is Phase.WAITING
        if waiting and self.began_since(uid, found):
            job = None  # it began after the condor_q that showed it idle
        if self.transfer:
            job = _from_the_event_log(found, job, utc_offset=self.tail.utc_offset)
            found = _from_the_queue(found, job)
        events = records.job_events(found.job)
        if job is not None and job.terminal and events.ended is None and not known.rechecked:
            # The files were read before the queue: the job may have ended in between,
            # its last lines unread. Read them once more before believing it was killed.
            known.rechecked = True
            if known.last is not None:
                return known.last
            job = None  # nothing reported yet: as the files say, until they are read again
        if not self.transfer:
            self.unexplained(uid, known, found)
        lost = self.lost(uid, known, found, on_record=on_record)
        return self.conclude(uid, known, found, _view(found, job, lost=lost))


def _job(
    job_id: str, queued: tuple[Mapping[str, Any], ...], done: tuple[Mapping[str, Any], ...]
) -> JobState | None:
    """HTCondor's record of the pod's job (the one its work directory names, else the
    newest): the queue's, else the history's."""
    for ads, read in ((queued, state.queued_job_state), (done, state.job_state)):
        for ad in ads:
            if not job_id or state.job_id(ad) == job_id:
                return read(ad)
    return None


def _from_the_event_log(
    found: records.PodFiles, job: JobState | None, *, utc_offset: int
) -> JobState | None:
    """A transferring job that the last ``condor_q`` did not show running (or that it
    did not show yet) but whose event log, read on the fast clock, says executes: it
    runs since its execute event."""
    if job is not None and job.phase is not Phase.WAITING:
        return job
    run = events.executing(found.events, utc_offset=utc_offset, now=time.time())
    if run is None or (found.job_id and run.job_id != found.job_id):
        return job
    return JobState(run.job_id, state.RUNNING, Phase.RUNNING, started=run.since)


def _from_the_queue(found: records.PodFiles, job: JobState | None) -> records.PodFiles:
    """A transferring job's files while it runs: the job began when HTCondor started it,
    and with it the first init container, else the app containers (how they fare comes
    back with the output)."""
    if job is None or job.phase is not Phase.RUNNING or found.meta is None:
        return found
    if records.job_events(found.job).began is not None:
        return found
    began = job.started or int(time.time())
    containers = defaultdict(list, found.containers)
    for name in found.meta.init[:1] or found.meta.containers:
        containers[name] = [f"start {began} 0"]
    return replace(found, job=[f"begin {began} - {job.job_id} -"], containers=containers)


def _view(found: records.PodFiles, job: JobState | None, *, lost: bool) -> report.JobView:
    """What HTCondor says of the job, in the batch layer's words (over the script's)."""
    said = None
    if job is not None:
        said = report.JobView(
            found.job_id or job.job_id,
            job.phase,
            SYSTEM,
            ending=job.ending,
            reason=job.message,
            exit_code=job.exit_code,
        )
    return report.job_view(found, said, system=SYSTEM, lost=lost)
