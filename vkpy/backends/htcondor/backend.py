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

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from vkpy.backend import Capacity, Health, LogOptions, PodSpec, Running
from vkpy.backends.htcondor import queue, submit
from vkpy.backends.htcondor.listing import Listing
from vkpy.backends.slurm import logs, naming, script, workdir
from vkpy.backends.slurm.book import Known
from vkpy.backends.slurm.jobbackend import STOP_MARGIN_SECONDS, JobBackend, transient
from vkpy.backends.slurm.naming import Layout
from vkpy.backends.slurm.podlog import PodLog, pod_log
from vkpy.backends.slurm.runtime import RuntimeOptions
from vkpy.config import HTCondorConfig
from vkpy.errors import BackendUnavailable, PodNotFound, PodRejected
from vkpy.transport import Runner

logger = logging.getLogger(__name__)


def settings_from(config: HTCondorConfig, node: str) -> script.Settings:
    """What the job script needs from the configuration."""
    return script.Settings(
        node=node,
        runtime=RuntimeOptions.from_config(config),
        kill_wait_seconds=config.kill_wait_seconds,
        allowed_host_paths=tuple(config.allowed_host_paths),
        relocatable=config.file_transfer == "transfer",
    )


class HTCondorBackend(JobBackend):
    """Runs one node's pods as HTCondor jobs; see the module docstring."""

    kind = "htcondor"
    system = "HTCondor"
    login = "submit node"

    def __init__(
        self,
        runner: Runner,
        config: HTCondorConfig,
        node_name: str,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.5,
    ) -> None:
        transfer = config.file_transfer == "transfer"
        self.listing = Listing(runner, node=node_name, transfer=transfer)
        super().__init__(
            runner,
            config,
            node_name,
            self.listing,
            settings_from(config, node_name),
            clock=clock,
            poll_seconds=poll_seconds,
        )
        self.config = config

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
        files = (*prepared.files, script.StagedFile(sub, description.encode(), script.PRIVATE_MODE))
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
                await self._refused(pod, prepared.pod_dir, "condor_submit", answer, log)
            job_id = queue.parse_job_id(answer.text)
            if not job_id:
                raise BackendUnavailable(f"condor_submit printed no job id: {answer.describe()}")
            self._remember(pod, job_id)
        pod_log(pod.uid, pod.namespace, pod.name, job_id).info(
            "submitted as HTCondor job %s in %.0f ms", job_id, (time.monotonic() - started) * 1000
        )

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
            await self._clean(uid, layout, log)

    async def _queued(self, uid: str) -> Sequence[str]:
        """The pod's jobs still in the queue (removed ones too, until they have left)."""
        answer = await self.runner.run(queue.condor_q_argv(self.node, uid=uid), idempotent=True)
        if not answer.ok:
            raise BackendUnavailable(f"condor_q failed: {answer.describe()}")
        return [
            f"{ad.get('ClusterId')}.{ad.get('ProcId', 0)}" for ad in queue.parse_ads(answer.text)
        ]

    async def _stop(self, uid: str, layout: Layout, grace: int, log: PodLog) -> None:
        await self._hand_grace(uid, layout, grace, log)
        log.info("removing the HTCondor job with a grace period of %ds", grace)
        answer = await self.runner.run(queue.condor_rm_argv(self.node, uid), idempotent=True)
        if not answer.ok and transient(answer):
            raise BackendUnavailable(f"condor_rm failed: {answer.describe()}")
        timeout = max(grace, 0) + STOP_MARGIN_SECONDS + self.config.delete_timeout_seconds
        left = await self._wait_gone(lambda: self._queued(uid), timeout)
        if left:
            raise BackendUnavailable(
                f"HTCondor job {','.join(left)} of pod uid {uid} is still in the queue "
                "after condor_rm"
            )
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
