"""`SlurmBackend`: each pod one Slurm job, through a command runner (SSH or local).

The flow (create, list, delete, logs) is every batch system's (`batch.jobbackend`);
Slurm gives:

- the submission: ``sbatch --parsable`` with the pod's flags (`sbatch`), and an
  existing job found by ``status/_jobid``, else by its name in ``squeue``;
- the listing: status files, one ``squeue``, one ``sacct`` for jobs that left the
  queue (`listing`);
- the stop: ``scancel`` for queued jobs, ``scancel --batch --signal=TERM`` for running
  ones (the job script stops its containers within the grace period), ``scancel``
  again for what still runs after it;
- health (``scontrol ping``) and capacity (``sinfo``, the partition's nodes added up);
- exec, attach and port-forward on the job's node: ``squeue`` says where it runs,
  ``srun --jobid --overlap`` runs the runtime's exec there (`srun`).

Everything is found again from the work directories and the queue, so a restarted
agent adopts running jobs (the job name carries the pod UID).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from vkpy.backend import Capacity, PodSpec
from vkpy.backends.batch import script
from vkpy.backends.batch.jobbackend import Active, JobBackend
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.reach import Placement, Target
from vkpy.backends.batch.state import Phase
from vkpy.backends.slurm import naming, queue, sbatch, srun
from vkpy.backends.slurm.config import SlurmConfig
from vkpy.backends.slurm.listing import Listing
from vkpy.errors import BackendError, BackendUnavailable
from vkpy.transport import Completed


class SlurmBackend(JobBackend[SlurmConfig]):
    """Runs one node's pods as Slurm jobs; see the module docstring."""

    kind = "slurm"
    system = "Slurm"
    login = "login node"
    queued_test = queue.QUEUED_TEST
    ping_argv = ("scontrol", "ping")
    where_test = srun.WHERE
    pod_logger = logging.getLogger("vkpy.backends.slurm")

    def new_book(self) -> Listing:
        return Listing(
            self.runner,
            node=self.node,
            accounting=self.config.accounting,
            federation=self.config.federation,
            clock=self.queue_clock(),
            pace=self.pace(),
        )

    def health_problem(self, answer: Completed) -> str | None:
        if " is UP" in answer.text:
            return None
        return f"slurmctld does not answer: {answer.text.strip() or answer.describe()}"

    async def capacity(self) -> Capacity | None:
        """The partition's nodes (sinfo): their CPUs, memory and GPUs added up."""
        if not self.config.capacity_from_sinfo:
            return None
        answer = await self.runner.run(queue.sinfo_argv(self.config.partition), idempotent=True)
        if not answer.ok:
            raise BackendError(f"cannot read the cluster's capacity: {answer.describe()}")
        return queue.parse_sinfo(answer.text, pods=self.config.max_pods)

    def submission(self, pod: PodSpec, layout: Layout) -> script.Submission:
        return sbatch.render(
            pod,
            layout=layout,
            settings=self.settings,
            now=self._clock(),
            options=sbatch.Options.from_config(self.config),
        )

    def parse_job_id(self, text: str) -> str | None:
        words = text.split()
        return words[-1] if words else None

    async def active(self, uid: str) -> Sequence[Active]:
        argv = queue.squeue_argv(
            names=[naming.job_name(self.node, uid)],
            active_only=True,
            federation=self.config.federation,
        )
        answer = await self.runner.run(argv, idempotent=True)
        if not answer.ok:
            raise BackendUnavailable(f"squeue failed: {answer.describe()}")
        jobs = queue.parse_squeue(answer.text, self.node).values()
        return tuple(
            Active(r.job_id, r.state.phase is Phase.RUNNING) for r in jobs if not r.state.terminal
        )

    def stop_argv(self, uid: str, job_ids: Sequence[str], *, graceful: bool) -> list[str]:
        return ["scancel", *(("--batch", "--signal=TERM") if graceful else ()), *job_ids]

    def placement(self, answer: str, job_id: str) -> Placement:
        return srun.placement(answer, job_id)

    def on_node(self, target: Target, argv: Sequence[str], *, tty: bool) -> list[str]:
        return srun.srun_argv(target, argv, tty=tty)
