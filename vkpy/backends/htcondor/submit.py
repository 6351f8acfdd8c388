"""A pod as an HTCondor submit description (pure).

The job runs the pod's wrapper script (init containers, then app containers, each
exit code recorded) with bash in the pod's work directory, on a filesystem the execute
nodes share with the submit node; or, with ``transfer``, in its scratch directory on the
execute node: HTCondor copies the script and the staged ``spec/``, ``status/`` and
``volumes/`` there and brings ``status/`` and ``logs/`` back into the work directory
(its initialdir) when the job exits or is evicted.

What differs between two pods of one node with the same resources and commands is
only their UID, namespace and name: the description is a template over those three
(`ITEMS`) with one ``queue ... from`` statement, so that many such pods go to the
schedd as one cluster in one ``condor_submit`` (`Description`, `bulk`), each pod one
job of it. One queue statement, because a single submit file with many is deprecated
and goes away in HTCondor 24; and no command can leak from one pod's job to the next,
since the pods of a cluster share every command. Resources come from the containers' limits (else
requests): the sum of the app containers, or the largest init container if that is
more, as the kubelet sizes a pod. Custom attributes carry the pod's UID and
the node's name, so one ``condor_q -constraint`` finds every job of the node.
Extra submit commands come from the config and from pod annotations under
``htcondor.vkpy.io/``; commands that would break the contract are refused.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vkpy.backend import PodSpec, Resources
from vkpy.backends.batch.naming import EVENT_LOG
from vkpy.backends.htcondor.commands import extra_commands
from vkpy.errors import PodRejected

UID_ATTRIBUTE = "VkpyPodUID"
NODE_ATTRIBUTE = "VkpyNode"
# With file transfer: what the job needs of the work directory, and what comes back.
TRANSFER_INPUT = ("spec", "status", "volumes")
TRANSFER_OUTPUT = ("status", "logs")
DEADLINE_MARGIN = 10  # seconds past the script's own deadline and grace
# The queue statement's variables: each pod's item gives them.
ITEMS = ("pod_uid", "pod_namespace", "pod_name")
# An item's values are split at whitespace and commas; Kubernetes names have neither.
_ITEM_VALUE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class Description:
    """A submit description as a template over `ITEMS` (``head``, ending in the queue
    statement's opening), the pod's item line, and the statement's close (``tail``)."""

    head: str
    item: str
    tail: str = ")\n"

    @property
    def text(self) -> str:
        """The description of this pod alone."""
        return self.head + self.item + self.tail

    @property
    def key(self) -> str:
        """Pods with the same key can share one cluster: their heads are equal."""
        return hashlib.sha256(self.head.encode()).hexdigest()[:16]


def pod_resources(pod: PodSpec) -> Resources:
    """What the whole pod needs: app containers side by side, init containers one by one."""

    def total(values: list[int | None]) -> int | None:
        known = [v for v in values if v]
        return sum(known) if known else None

    def largest(values: list[int | None]) -> int | None:
        known = [v for v in values if v]
        return max(known) if known else None

    apps, inits = pod.containers, pod.init_containers

    def both(app: int | None, init: int | None) -> int | None:
        return max(app or 0, init or 0) or None

    return Resources(
        cpu_millis=both(
            total([c.resources.cpu_millis for c in apps]),
            largest([c.resources.cpu_millis for c in inits]),
        ),
        memory_bytes=both(
            total([c.resources.memory_bytes for c in apps]),
            largest([c.resources.memory_bytes for c in inits]),
        ),
        gpus=max(
            sum(c.resources.gpus for c in apps), max((c.resources.gpus for c in inits), default=0)
        ),
    )


def _quoted(value: str) -> str:
    """A ClassAd string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def submit_description(pod: PodSpec, **kwargs: Any) -> str:
    """`description`'s text for this pod alone."""
    return description(pod, **kwargs).text


def description(
    pod: PodSpec,
    *,
    node_name: str,
    base: str,
    kill_wait_seconds: int = 30,
    config_extra: Mapping[str, str] | None = None,
    transfer: bool = False,
) -> Description:
    """The submit description for ``pod``, whose wrapper script is
    ``<base>/<uid>/job.sh``; ``transfer``: HTCondor copies the work directory to the
    job and its results back.

    The script enforces activeDeadlineSeconds itself (and records why it stopped);
    ``allowed_job_duration`` is HTCondor's backstop, a little later, so that a job the
    script cannot stop is held (HoldReasonCode 46) rather than left running.
    """
    item = " ".join(_item_value(v) for v in (pod.uid, pod.namespace, pod.name)) + "\n"
    resources = pod_resources(pod)
    if transfer:
        files = [
            "should_transfer_files = YES",
            "when_to_transfer_output = ON_EXIT_OR_EVICT",
            f"transfer_input_files = {','.join(('job.sh', *TRANSFER_INPUT))}",
            f"transfer_output_files = {','.join(TRANSFER_OUTPUT)}",
        ]
    else:
        files = ["should_transfer_files = NO"]
    lines = [
        "universe = vanilla",
        # bash from the execute node, the script from the job's directory: the same
        # executable for every pod, as one cluster needs.
        "executable = /bin/bash",
        "arguments = job.sh",
        "transfer_executable = false",
        *files,
        f"initialdir = {base}/$(pod_uid)",
        "output = logs/_job.out",
        "error = logs/_job.err",
        f"log = {EVENT_LOG}",
        "kill_sig = SIGTERM",
        f"job_max_vacate_time = {kill_wait_seconds}",
        f"request_cpus = {max(1, math.ceil((resources.cpu_millis or 1000) / 1000))}",
    ]
    if resources.memory_bytes:
        lines.append(f"request_memory = {max(1, math.ceil(resources.memory_bytes / 2**20))}MB")
    if resources.gpus:
        lines.append(f"request_gpus = {resources.gpus}")
    if pod.active_deadline_seconds is not None:
        backstop = max(0, pod.active_deadline_seconds) + kill_wait_seconds + DEADLINE_MARGIN
        lines.append(f"allowed_job_duration = {backstop}")
    lines += [
        f'+{UID_ATTRIBUTE} = "$(pod_uid)"',
        f"+{NODE_ATTRIBUTE} = {_quoted(node_name)}",
        '+VkpyPodNamespace = "$(pod_namespace)"',
        '+VkpyPodName = "$(pod_name)"',
    ]
    for command, value in extra_commands(config_extra or {}, pod.annotations).items():
        lines.append(f"{command} = {value}")
    lines.append(f"queue {','.join(ITEMS)} from (")
    return Description(head="\n".join(lines) + "\n", item=item)


def _item_value(value: str) -> str:
    if not _ITEM_VALUE.match(value):
        raise PodRejected(f"{value!r} is not a Kubernetes name: HTCondor cannot queue it")
    return value


def node_constraint(node_name: str) -> str:
    """The constraint that selects every job of this node."""
    return f"{NODE_ATTRIBUTE} == {_quoted(node_name)}"


def pod_constraint(node_name: str, uid: str) -> str:
    """The constraint that selects the jobs of one pod of this node."""
    return f"{node_constraint(node_name)} && {UID_ATTRIBUTE} == {_quoted(uid)}"
