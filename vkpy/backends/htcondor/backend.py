"""`HTCondorBackend`: each pod one HTCondor job, through a command runner (SSH or local).

The flow (create, list, delete, logs) is every batch system's (`batch.jobbackend`), and
so are the job script and the work directory layout; HTCondor gives:

- the submission: the submit description (`submit`) staged as ``job.sub`` beside the
  work directory and ``condor_submit -terse``; an existing job is found by
  ``status/_jobid``, else by ``condor_q`` on the pod's UID attribute;
- the listing: status files, one ``condor_q -json`` and one ``condor_history -json``
  for all the node's jobs (`listing`);
- the stop: ``condor_rm`` of the pod's jobs (HTCondor sends SIGTERM, then SIGKILL
  after job_max_vacate_time), again for what is still there after the grace period;
- health (a ``condor_q`` that matches nothing) and capacity: the pool's size is no
  node's, so the node offers its configured capacity with ``max_pods`` pods;
- exec and attach through ``condor_ssh_to_job`` into the job's sandbox, port-forward
  to its execute host (``RemoteHost``) through the runner (`sshtojob`).

A restarted agent adopts everything from the work directories and the queue (the
job's VkpyPodUID attribute). With ``file_transfer: transfer`` HTCondor copies the work
directory's inputs to the job and its ``status/`` and ``logs/`` back at the end
(`submit`); until then a running job is reported from ``condor_q`` (`listing`) and its
logs are empty.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from vkpy.backend import Capacity, PodSpec, Running
from vkpy.backends.batch import script
from vkpy.backends.batch.book import Known
from vkpy.backends.batch.jobbackend import Active, JobBackend
from vkpy.backends.batch.naming import JOB_ID, Layout
from vkpy.backends.batch.reach import Placement, Target
from vkpy.backends.htcondor import queue, sshtojob, state, submit
from vkpy.backends.htcondor.config import HTCondorConfig
from vkpy.backends.htcondor.listing import Listing
from vkpy.errors import BackendUnavailable
from vkpy.quantity import parse_quantity
from vkpy.transport import Completed


class HTCondorBackend(JobBackend[HTCondorConfig]):
    """Runs one node's pods as HTCondor jobs; see the module docstring."""

    kind = "htcondor"
    system = "HTCondor"
    login = "submit node"
    queued_test = queue.QUEUED_TEST
    ping_argv = ("condor_q", "-json", "-constraint", "ClusterId == -1", "-attributes", "ClusterId")
    pod_logger = logging.getLogger("vkpy.backends.htcondor")
    where_test = sshtojob.WHERE
    offered: Mapping[str, str] | None = None  # node.capacity, for `capacity`

    @property
    def relocatable(self) -> bool:
        return self.config.file_transfer == "transfer"

    def new_book(self) -> Listing:
        return Listing(
            self.runner,
            node=self.node,
            transfer=self.relocatable,
            clock=self.queue_clock(),
            pace=self.pace(),
        )

    def health_problem(self, answer: Completed) -> str | None:
        return None if answer.ok else f"the schedd does not answer: {answer.describe()}"

    async def capacity(self) -> Capacity | None:
        """The node's configured CPUs and memory (`offered`), with ``max_pods`` pods."""
        if self.offered is None or not {"cpu", "memory"} <= self.offered.keys():
            return None
        return Capacity(
            cpu_millis=int(parse_quantity(self.offered["cpu"]) * 1000),
            memory_bytes=int(parse_quantity(self.offered["memory"])),
            pods=self.config.max_pods,
        )

    def submission(self, pod: PodSpec, layout: Layout) -> script.Submission:
        prepared = script.prepare(pod, layout=layout, settings=self.settings, now=self._clock())
        description = submit.description(
            pod,
            node_name=self.node,
            base=layout.base,
            kill_wait_seconds=self.config.kill_wait_seconds,
            config_extra=self.config.submit_commands,
            transfer=self.relocatable,
        )
        sub = f"{prepared.pod_dir}/job.sub"
        return script.submission(
            prepared,
            queue.submit_argv(sub),
            existing=queue.existing_argv(f"{prepared.pod_dir}/status/{JOB_ID}", self.node, pod.uid),
            extra=(script.StagedFile(sub, description.text.encode(), script.PRIVATE_MODE),),
            group=script.Grouped(
                key=description.key,
                argv=tuple(queue.GROUP_SUBMIT),
                head=description.head.encode(),
                item=description.item.encode(),
                tail=description.tail.encode(),
            ),
        )

    def parse_job_id(self, text: str) -> str | None:
        return queue.parse_job_id(text)

    async def active(self, uid: str) -> Sequence[Active]:
        """The pod's jobs still in the queue (removed ones too, until they have left):
        all stopped gracefully, as condor_rm does."""
        answer = await self.runner.run(queue.condor_q_argv(self.node, uid=uid), idempotent=True)
        if not answer.ok:
            raise BackendUnavailable(f"condor_q failed: {answer.describe()}")
        return [Active(state.job_id(ad), running=True) for ad in queue.parse_ads(answer.text)]

    def stop_argv(self, uid: str, job_ids: Sequence[str], *, graceful: bool) -> list[str]:
        return queue.condor_rm_argv(self.node, uid)

    def logs_away(self, uid: str, container: str) -> bool:
        """Whether, with file transfer, the container runs and its log is with the job."""
        last = self.book.known.get(uid, Known()).last
        if not self.relocatable or last is None:
            return False
        statuses = (*last.init_containers, *last.containers)
        return any(c.name == container and isinstance(c.state, Running) for c in statuses)

    def placement(self, answer: str, job_id: str) -> Placement:
        return sshtojob.placement(answer, job_id)

    def on_node(self, target: Target, argv: Sequence[str], *, tty: bool) -> list[str]:
        return sshtojob.ssh_to_job_argv(target, argv, tty=tty)
