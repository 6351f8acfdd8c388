"""`HTCondorBackend`: each pod one HTCondor job, through a command runner (SSH or local).

The job is the Slurm backend's job script in the same work directory layout (`slurm.
script`, `slurm.workdir`): only the submission, the queue and the removal differ.

- ``create`` renders the pod and its submit description, checks that it has no job
  yet (``status/_jobid``, else ``condor_q`` on the pod's UID attribute), stages the
  work directory over the runner (directories 0700, secrets 0600) and runs
  ``condor_submit -terse`` in one remote command that also records the job id.
- ``list``: the status files of unfinished pods, one ``condor_q -json`` and one
  ``condor_history -json`` for all the node's jobs (`listing`).
- ``delete`` hands the job script the grace period, ``condor_rm``s the pod's jobs
  (HTCondor sends SIGTERM, then SIGKILL after job_max_vacate_time), waits until they
  have left the queue, then removes the work directory; it raises, to be retried,
  until they have.
- A restarted agent adopts everything from the work directories and the queue (the
  job's VkpyPodUID attribute).
- With ``file_transfer: transfer`` HTCondor copies the work directory's inputs to the
  job and its ``status/`` and ``logs/`` back at the end (`submit`); until then a
  running job is reported from ``condor_q`` (`listing`) and its logs are empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from vkpy.backend import Capacity, Health, LogOptions, PodRun, PodSpec, Running
from vkpy.backends.htcondor import queue, submit
from vkpy.backends.htcondor.listing import Listing
from vkpy.backends.slurm import logs, naming, script, workdir
from vkpy.backends.slurm.listing import Known
from vkpy.backends.slurm.naming import Layout
from vkpy.backends.slurm.podlog import PodLog, pod_log
from vkpy.backends.slurm.runtime import RuntimeOptions
from vkpy.config import HTCondorConfig
from vkpy.errors import BackendError, BackendUnavailable, PodNotFound, PodRejected
from vkpy.transport import Completed, Runner

logger = logging.getLogger(__name__)

STOP_MARGIN_SECONDS = 10.0  # past the grace period, for the script to record and exit
# Answers that say "try again later", not "this pod cannot run".
TRANSIENT = (
    "failed to connect",
    "can't find address",
    "connection refused",
    "timed out",
    "temporarily unavailable",
    "try again",
)


def _transient(completed: Completed) -> bool:
    text = completed.stderr.decode("utf-8", errors="replace").lower()
    return completed.status in (126, 127) or any(marker in text for marker in TRANSIENT)


def settings_from(config: HTCondorConfig, node: str) -> script.Settings:
    """What the job script needs from the configuration."""
    options = RuntimeOptions(
        kind=config.runtime,
        executable=config.runtime_path or config.runtime,
        flags=tuple(config.runtime_flags),
        network=config.podman_network,
    )
    return script.Settings(
        node=node,
        runtime=options,
        kill_wait_seconds=config.kill_wait_seconds,
        allowed_host_paths=tuple(config.allowed_host_paths),
        relocatable=config.file_transfer == "transfer",
    )


class HTCondorBackend:
    """Runs one node's pods as HTCondor jobs; see the module docstring."""

    kind = "htcondor"

    def __init__(
        self,
        runner: Runner,
        config: HTCondorConfig,
        node_name: str,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.5,
    ) -> None:
        self.runner = runner
        self.config = config
        self.node = node_name
        self.settings = settings_from(config, node_name)
        self._clock = clock
        self._poll = poll_seconds
        self._layout: Layout | None = None
        transfer = config.file_transfer == "transfer"
        self.listing = Listing(runner, node=node_name, transfer=transfer)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and make the node's base directory; an unreachable submit node is
        reported by health() and retried on use, not fatal."""
        try:
            await self._ready()
        except BackendUnavailable as exc:
            logger.warning("HTCondor backend for node %s: %s (retrying on use)", self.node, exc)
            return
        logger.info(
            "HTCondor backend for node %s started on %s, work directory %s, runtime %s",
            self.node,
            self.runner.target,
            self.layout.base,
            self.config.runtime,
        )

    async def close(self) -> None:
        logger.info(
            "HTCondor backend for node %s: commands %s, connections opened %d",
            self.node,
            dict(self.runner.calls),
            self.runner.connections_opened,
        )
        await self.runner.close()

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            raise BackendUnavailable("the HTCondor backend has not reached the submit node yet")
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
            answer = await self.runner.run(
                ["condor_q", "-json", "-constraint", "ClusterId == -1", "-attributes", "ClusterId"],
                idempotent=True,
            )
        except BackendUnavailable as exc:
            return Health(ok=False, message=f"submit node unreachable: {exc}")
        if not answer.ok:
            return Health(ok=False, message=f"the schedd does not answer: {answer.describe()}")
        return Health(ok=True)

    async def capacity(self) -> Capacity | None:
        return None  # the pool's size is no node's: node.capacity says what to offer

    def _lock(self, uid: str) -> asyncio.Lock:
        lock = self._locks.get(uid)
        if lock is None:
            lock = self._locks[uid] = asyncio.Lock()
        return lock

    # ------------------------------------------------------------ create

    async def create(self, pod: PodSpec) -> None:
        layout = await self._ready()
        prepared = script.prepare(pod, layout=layout, settings=self.settings, now=self._clock())
        description = submit.submit_description(
            pod,
            node_name=self.node,
            pod_dir=prepared.pod_dir,
            kill_wait_seconds=self.config.kill_wait_seconds,
            config_extra=self.config.submit_commands,
            transfer=self.config.file_transfer == "transfer",
        )
        sub = f"{prepared.pod_dir}/job.sub"
        files = (*prepared.files, script.StagedFile(sub, description.encode(), script.SECRET_MODE))
        log = pod_log(pod.uid, pod.namespace, pod.name)
        async with self._lock(pod.uid):
            job_id_file = f"{layout.status(pod.uid)}/{naming.JOB_ID}"
            found = await self.runner.run(
                queue.existing_argv(job_id_file, self.node, pod.uid), idempotent=True
            )
            existing = queue.parse_job_id(found.text) if found.ok else None
            if existing:
                self._remember(pod, existing)
                log.debug("has HTCondor job %s already", existing)
                return
            started = time.monotonic()
            await workdir.stage(self.runner, prepared.dirs, files)
            answer = await self.runner.run(queue.submit_argv(prepared.pod_dir, sub))
            if not answer.ok:
                await self._refused(pod, prepared.pod_dir, answer, log)
            job_id = queue.parse_job_id(answer.text)
            if not job_id:
                raise BackendUnavailable(f"condor_submit printed no job id: {answer.describe()}")
            self._remember(pod, job_id)
        pod_log(pod.uid, pod.namespace, pod.name, job_id).info(
            "submitted as HTCondor job %s in %.0f ms", job_id, (time.monotonic() - started) * 1000
        )

    def _remember(self, pod: PodSpec, job_id: str) -> None:
        self.listing.remember(pod.uid, job_id, namespace=pod.namespace, name=pod.name)

    async def _refused(self, pod: PodSpec, pod_dir: str, answer: Completed, log: PodLog) -> None:
        if _transient(answer):
            raise BackendUnavailable(f"condor_submit failed, to be retried: {answer.describe()}")
        log.warning("condor_submit refused the pod: %s", answer.describe())
        with contextlib.suppress(BackendError):
            await self.runner.run(["rm", "-rf", "--", pod_dir])
        stderr = answer.stderr.decode("utf-8", errors="replace").strip()
        raise PodRejected(f"condor_submit refused pod {pod.key}: {stderr or answer.describe()}")

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
            log = pod_log(uid, known.namespace, known.name, known.job_id)
            if await self._queued(uid):
                await self._stop(uid, layout, grace_seconds, log)
            podman = self.settings.runtime.executable if self.config.runtime == "podman" else None
            await workdir.remove(
                self.runner,
                layout,
                uid,
                log,
                retention_seconds=self.config.work_dir_retention_seconds,
                podman=podman,
            )
            self.listing.forget(uid)

    async def _queued(self, uid: str) -> Sequence[str]:
        """The pod's jobs still in the queue (removed ones too, until they have left)."""
        answer = await self.runner.run(queue.condor_q_argv(self.node, uid=uid), idempotent=True)
        if not answer.ok:
            raise BackendUnavailable(f"condor_q failed: {answer.describe()}")
        return [
            f"{ad.get('ClusterId')}.{ad.get('ProcId', 0)}" for ad in queue.parse_ads(answer.text)
        ]

    async def _stop(self, uid: str, layout: Layout, grace: int, log: PodLog) -> None:
        try:  # the script's own grace period applies if this cannot be written
            await self.runner.put(f"{layout.pod(uid)}/grace", b"%d\n" % max(grace, 0), mode=0o600)
        except BackendUnavailable:
            raise
        except BackendError as exc:
            log.warning("cannot hand the job its grace period: %s", exc)
        log.info("removing the HTCondor job with a grace period of %ds", grace)
        answer = await self.runner.run(queue.condor_rm_argv(self.node, uid), idempotent=True)
        if not answer.ok and _transient(answer):
            raise BackendUnavailable(f"condor_rm failed: {answer.describe()}")
        timeout = max(grace, 0) + STOP_MARGIN_SECONDS + self.config.delete_timeout_seconds
        deadline = time.monotonic() + timeout
        pause = self._poll
        while left := await self._queued(uid):
            if time.monotonic() >= deadline:
                raise BackendUnavailable(
                    f"HTCondor job {','.join(left)} of pod uid {uid} is still in the queue "
                    "after condor_rm"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        log.info("HTCondor job has left the queue")

    # ------------------------------------------------------------ logs

    async def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        layout = await self._ready()
        try:
            argv = await workdir.log_argv(
                self.runner,
                layout,
                uid,
                container,
                options,
                system="HTCondor",
                queued=logs.HTCONDOR_QUEUED,
            )
        except PodNotFound:
            if self._logs_away(uid, container):
                return  # they come back with the job's output
            raise
        async for chunk in workdir.stream_log(self.runner, argv, options.limit_bytes):
            yield chunk

    def _logs_away(self, uid: str, container: str) -> bool:
        """Whether, with file transfer, the container runs and its log is with the job."""
        last = self.listing.known.get(uid, Known()).last
        if self.config.file_transfer != "transfer" or last is None:
            return False
        statuses = (*last.init_containers, *last.containers)
        return any(c.name == container and isinstance(c.state, Running) for c in statuses)
