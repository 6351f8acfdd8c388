"""`SlurmBackend`: each pod one Slurm job, through a command runner (SSH or local).

How a pod runs:

- ``create`` renders the pod (`script`), checks that it has no job yet (its work
  directory's ``status/_jobid``, else the queue by job name), stages the work directory
  over the runner (SFTP: directories 0700, secrets 0600), and submits the job in one
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

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from vkpy.backend import Capacity, Health, LogOptions, PodRun, PodSpec
from vkpy.backends.slurm import logs, naming, queue, script, workdir
from vkpy.backends.slurm.listing import Known, Listing
from vkpy.backends.slurm.naming import Layout
from vkpy.backends.slurm.podlog import PodLog, pod_log
from vkpy.backends.slurm.queue import JobRecord
from vkpy.backends.slurm.state import Phase
from vkpy.config import SlurmConfig
from vkpy.errors import BackendError, BackendUnavailable, PodRejected
from vkpy.transport import Completed, Runner

logger = logging.getLogger(__name__)

STOP_MARGIN_SECONDS = 10.0  # past the grace period, for the script to record and exit
# sbatch/scancel messages that say "try again later", not "this pod cannot run".
TRANSIENT = (
    "socket timed out",
    "unable to contact slurm controller",
    "connection refused",
    "temporarily unavailable",
    "try again",
    "zero bytes were transmitted",
    "communication connection failure",
    "not responding",
    "transport endpoint",
)


def _transient(completed: Completed) -> bool:
    text = completed.stderr.decode("utf-8", errors="replace").lower()
    return completed.status in (126, 127) or any(marker in text for marker in TRANSIENT)


class SlurmBackend:
    """Runs one node's pods as Slurm jobs; see the module docstring."""

    kind = "slurm"

    def __init__(
        self,
        runner: Runner,
        config: SlurmConfig,
        node_name: str,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.5,
    ) -> None:
        self.runner = runner
        self.config = config
        self.node = node_name
        self.settings = script.Settings.from_config(config, node=node_name)
        self._clock = clock
        self._poll = poll_seconds
        self._layout: Layout | None = None
        self.listing = Listing(runner, node=node_name, accounting=config.accounting)
        # One lock per pod in use; a pod nobody works on holds none.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and make the node's base directory; an unreachable login node is
        reported by health() and retried on use, not fatal."""
        try:
            await self._ready()
        except BackendUnavailable as exc:
            logger.warning("Slurm backend for node %s: %s (retrying on use)", self.node, exc)
            return
        logger.info(
            "Slurm backend for node %s started on %s, work directory %s, runtime %s",
            self.node,
            self.runner.target,
            self.layout.base,
            self.config.runtime,
        )

    async def close(self) -> None:
        logger.info(
            "Slurm backend for node %s: commands %s, connections opened %d",
            self.node,
            dict(self.runner.calls),
            self.runner.connections_opened,
        )
        await self.runner.close()

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            raise BackendUnavailable("the Slurm backend has not reached the login node yet")
        return self._layout

    async def _ready(self) -> Layout:
        if self._layout is not None:
            return self._layout
        base = f"{self.config.work_dir}/{self.node}"
        done = await self.runner.run(
            ["sh", "-c", 'umask 077 && mkdir -p -- "$1" && cd -- "$1" && pwd -P', "sh", base],
            idempotent=True,
        )
        if not done.ok or not done.text.strip():
            raise BackendUnavailable(f"cannot make the work directory {base}: {done.describe()}")
        self._layout = Layout(done.text.strip().splitlines()[-1])
        return self._layout

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

    def _lock(self, uid: str) -> asyncio.Lock:
        lock = self._locks.get(uid)
        if lock is None:
            lock = self._locks[uid] = asyncio.Lock()
        return lock

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
                await self._refused(pod, submission, answer, log)
            job_id = answer.text.split()[-1] if answer.text.split() else ""
            if not job_id:
                raise BackendUnavailable(f"sbatch printed no job id: {answer.describe()}")
            self._remember(pod, job_id)
        pod_log(pod.uid, pod.namespace, pod.name, job_id).info(
            "submitted as Slurm job %s in %.0f ms", job_id, (time.monotonic() - started) * 1000
        )

    def _remember(self, pod: PodSpec, job_id: str) -> None:
        self.listing.remember(pod.uid, job_id, namespace=pod.namespace, name=pod.name)

    async def _stage(self, submission: script.Submission) -> None:
        await workdir.stage(self.runner, submission.dirs, submission.files)

    async def _refused(
        self, pod: PodSpec, submission: script.Submission, answer: Completed, log: PodLog
    ) -> None:
        if _transient(answer):
            raise BackendUnavailable(f"sbatch failed, to be retried: {answer.describe()}")
        log.warning("sbatch refused the pod: %s", answer.describe())
        with contextlib.suppress(BackendError):
            await self.runner.run(["rm", "-rf", "--", submission.pod_dir])
        stderr = answer.stderr.decode("utf-8", errors="replace").strip()
        raise PodRejected(f"sbatch refused pod {pod.key}: {stderr or answer.describe()}")

    # ------------------------------------------------------------ list

    async def list(self) -> Mapping[str, PodRun]:
        return await self.listing.list(await self._ready())

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
            self.listing.forget(uid)

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
        if not answer.ok and _transient(answer):
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
            try:  # the script's own grace period applies if this cannot be written
                await self.runner.put(
                    f"{layout.pod(uid)}/grace", b"%d\n" % max(grace, 0), mode=0o600
                )
            except BackendUnavailable:
                raise
            except BackendError as exc:
                log.warning("cannot hand the job its grace period: %s", exc)
            log.info("stopping job %s with a grace period of %ds", ",".join(running), grace)
            await self._scancel(running, "--batch", "--signal=TERM")
            if not await self._gone(name, max(grace, 0) + STOP_MARGIN_SECONDS):
                log.info("job still runs after the grace period: cancelling it")
        left = await self._active(name)
        if left:
            await self._scancel([r.job_id for r in left])
            if not await self._gone(name, self.config.delete_timeout_seconds):
                raise BackendUnavailable(
                    f"Slurm job {','.join(r.job_id for r in left)} of pod uid {uid} "
                    "is still there after scancel"
                )
        log.info("Slurm job is over")

    async def _gone(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pause = self._poll
        while True:
            if not await self._active(name):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def _clean(self, uid: str, layout: Layout, log: PodLog) -> None:
        podman = self.settings.runtime.executable if self.config.runtime == "podman" else None
        await workdir.remove(
            self.runner,
            layout,
            uid,
            log,
            retention_seconds=self.config.work_dir_retention_seconds,
            podman=podman,
        )

    # ------------------------------------------------------------ logs

    async def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        layout = await self._ready()
        argv = await workdir.log_argv(
            self.runner, layout, uid, container, options, system="Slurm", queued=logs.SLURM_QUEUED
        )
        async for chunk in workdir.stream_log(self.runner, argv, options.limit_bytes):
            yield chunk
