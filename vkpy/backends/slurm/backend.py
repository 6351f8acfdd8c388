"""`SlurmBackend`: each pod one Slurm job, through a command runner (SSH or local).

How a pod runs:

- ``create`` renders the pod (`script`), checks that it has no job yet (its work
  directory's ``status/_jobid``, else the queue by job name), stages the work directory
  over the runner (one tar extraction: directories 0700, secrets 0600), and submits the job in one
  remote command that also records the job id; a retried create finds that id and
  never submits twice.
- ``list`` reads the status files of every pod not yet finished in one command, the
  queue in one ``squeue``, and jobs that left the queue in one ``sacct``, and turns
  them into `PodRun` records (`report`). Finished pods are remembered, not read again.
- ``delete`` lets the job script stop its containers within the grace period
  (``scancel --batch --signal=TERM``), cancels what still runs, waits until Slurm
  confirms the job is over, then removes the work directory. It raises, to be retried,
  until Slurm confirms.
- Everything is found again from the work directories and the queue, so a restarted
  agent adopts running jobs (the job name carries the pod UID).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from vkpy.backend import Capacity, Health, LogOptions, PodSpec
from vkpy.backends.slurm import logs, naming, queue, script, workdir
from vkpy.backends.slurm.book import Known
from vkpy.backends.slurm.jobbackend import STOP_MARGIN_SECONDS, JobBackend, transient
from vkpy.backends.slurm.listing import Listing
from vkpy.backends.slurm.naming import Layout
from vkpy.backends.slurm.podlog import PodLog, pod_log
from vkpy.backends.slurm.queue import JobRecord
from vkpy.backends.slurm.state import Phase
from vkpy.config import SlurmConfig
from vkpy.errors import BackendError, BackendUnavailable, PodRejected
from vkpy.transport import Runner

logger = logging.getLogger(__name__)


class SlurmBackend(JobBackend):
    """Runs one node's pods as Slurm jobs; see the module docstring."""

    kind = "slurm"
    system = "Slurm"
    login = "login node"

    def __init__(
        self,
        runner: Runner,
        config: SlurmConfig,
        node_name: str,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.5,
    ) -> None:
        self.listing = Listing(runner, node=node_name, accounting=config.accounting)
        settings = script.Settings.from_config(config, node=node_name)
        super().__init__(
            runner,
            config,
            node_name,
            self.listing,
            settings,
            clock=clock,
            poll_seconds=poll_seconds,
        )
        self.config = config

    async def health(self) -> Health:
        try:
            await self._ready()
            answer = await self.runner.run(["scontrol", "ping"], idempotent=True)
        except BackendUnavailable as exc:
            return Health(ok=False, message=f"login node unreachable: {exc}")
        if " is UP" not in answer.text:
            reply = answer.text.strip() or answer.describe()
            return Health(ok=False, message=f"slurmctld does not answer: {reply}")
        return Health(ok=True)

    async def capacity(self) -> Capacity | None:
        """The partition's nodes (sinfo): their CPUs, memory and GPUs added up."""
        if not self.config.capacity_from_sinfo:
            return None
        answer = await self.runner.run(queue.sinfo_argv(self.config.partition), idempotent=True)
        if not answer.ok:
            raise BackendError(f"cannot read the cluster's capacity: {answer.describe()}")
        return queue.parse_sinfo(answer.text, pods=self.config.max_pods)

    # ------------------------------------------------------------ create

    async def create(self, pod: PodSpec) -> None:
        layout = await self._ready()
        submission = script.render(pod, layout=layout, settings=self.settings, now=self._clock())
        log = pod_log(pod.uid, pod.namespace, pod.name)
        async with self._lock(pod.uid):
            found = await self.runner.run(submission.existing, idempotent=True)
            existing = found.text.split()
            if found.ok and existing:
                self._remember(pod, existing[-1])
                log.debug("has Slurm job %s already", existing[-1])
                return
            started = time.monotonic()
            await self._stage(submission)
            answer = await self.runner.run(submission.submit)
            if not answer.ok:
                await self._refused(pod, submission.pod_dir, "sbatch", answer, log)
            job_id = answer.text.split()[-1] if answer.text.split() else ""
            if not job_id:
                raise BackendUnavailable(f"sbatch printed no job id: {answer.describe()}")
            self._remember(pod, job_id)
        pod_log(pod.uid, pod.namespace, pod.name, job_id).info(
            "submitted as Slurm job %s in %.0f ms", job_id, (time.monotonic() - started) * 1000
        )

    async def _stage(self, submission: script.Submission) -> None:
        await workdir.stage(self.runner, submission.dirs, submission.files)

    # ------------------------------------------------------------ delete

    async def delete(self, uid: str, *, grace_seconds: int) -> None:
        try:
            naming.check_uid(uid)
        except PodRejected:
            return  # no pod with such a UID can exist here
        layout = await self._ready()
        known = self.listing.known.get(uid, Known())
        async with self._lock(uid):
            name = naming.job_name(self.node, uid)
            log = pod_log(uid, known.namespace, known.name, known.job_id)
            active = await self._active(name)
            if active:
                await self._stop(uid, layout, active, grace_seconds, log)
            await self._clean(uid, layout, log)

    async def _active(self, name: str) -> tuple[JobRecord, ...]:
        answer = await self.runner.run(
            queue.squeue_argv(names=[name], active_only=True), idempotent=True
        )
        if not answer.ok:
            raise BackendUnavailable(f"squeue failed: {answer.describe()}")
        jobs = queue.parse_squeue(answer.text, self.node).values()
        return tuple(r for r in jobs if not r.state.terminal)

    async def _scancel(self, job_ids: Sequence[str], *flags: str) -> None:
        answer = await self.runner.run(["scancel", *flags, *job_ids], idempotent=True)
        if not answer.ok and transient(answer):
            raise BackendUnavailable(f"scancel failed: {answer.describe()}")

    async def _stop(
        self, uid: str, layout: Layout, active: Sequence[JobRecord], grace: int, log: PodLog
    ) -> None:
        name = naming.job_name(self.node, uid)
        running = [r.job_id for r in active if r.state.phase is Phase.RUNNING]
        queued = [r.job_id for r in active if r.state.phase is not Phase.RUNNING]
        if queued:
            await self._scancel(queued)
        if running:
            await self._hand_grace(uid, layout, grace, log)
            log.info("stopping job %s with a grace period of %ds", ",".join(running), grace)
            await self._scancel(running, "--batch", "--signal=TERM")
            if not await self._gone(name, max(grace, 0) + STOP_MARGIN_SECONDS):
                log.info("job still runs after the grace period: cancelling it")
        left = await self._active(name)
        if left:
            # The job script stops its containers on Slurm's SIGTERM; the sweep after
            # scancel is the net for a script SIGKILLed before its trap ran.
            cancel = ["scancel", *(r.job_id for r in left)]
            answer = await self._sweep([uid], cancel)
            if answer is not None and not answer.ok and transient(answer):
                raise BackendUnavailable(f"scancel failed: {answer.describe()}")
            if not await self._gone(name, self.config.delete_timeout_seconds):
                raise BackendUnavailable(
                    f"Slurm job {','.join(r.job_id for r in left)} of pod uid {uid} "
                    "is still there after scancel"
                )
        log.info("Slurm job is over")

    async def _gone(self, name: str, timeout: float) -> bool:
        return not await self._wait_gone(lambda: self._active(name), timeout)

    # ------------------------------------------------------------ logs

    async def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        layout = await self._ready()
        argv = await workdir.log_argv(
            self.runner, layout, uid, container, options, system="Slurm", queued=logs.SLURM_QUEUED
        )
        async for chunk in workdir.stream_log(self.runner, argv, options.limit_bytes):
            yield chunk
