"""A pod as an HTCondor submit description (pure).

The job runs the pod's wrapper script (init containers, then app containers, each
exit code recorded) in the pod's work directory, on a filesystem the execute nodes
share with the submit node; or, with ``transfer``, in its scratch directory on the
execute node: HTCondor copies the staged ``spec/``, ``status/`` and ``volumes/`` there
and brings ``status/`` and ``logs/`` back into the work directory (its initialdir) when
the job exits or is evicted. Resources come from the containers' limits (else
requests): the sum of the app containers, or the largest init container if that is
more, as the kubelet sizes a pod. Custom attributes carry the pod's UID and
the node's name, so one ``condor_q -constraint`` finds every job of the node.
Extra submit commands come from the config and from pod annotations under
``htcondor.vkpy.io/``; commands that would break the contract are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from vkpy.backend import PodSpec, Resources
from vkpy.backends.htcondor.commands import extra_commands

UID_ATTRIBUTE = "VkpyPodUID"
NODE_ATTRIBUTE = "VkpyNode"
# With file transfer: what the job needs of the work directory, and what comes back.
TRANSFER_INPUT = ("spec", "status", "volumes")
TRANSFER_OUTPUT = ("status", "logs")
DEADLINE_MARGIN = 10  # seconds past the script's own deadline and grace


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


def submit_description(
    pod: PodSpec,
    *,
    node_name: str,
    pod_dir: str,
    kill_wait_seconds: int = 30,
    config_extra: Mapping[str, str] | None = None,
    transfer: bool = False,
) -> str:
    """The submit description for ``pod``, whose wrapper script is ``<pod_dir>/job.sh``;
    ``transfer``: HTCondor copies the work directory to the job and its results back.

    The script enforces activeDeadlineSeconds itself (and records why it stopped);
    ``allowed_job_duration`` is HTCondor's backstop, a little later, so that a job the
    script cannot stop is held (HoldReasonCode 46) rather than left running.
    """
    resources = pod_resources(pod)
    if transfer:
        files = [
            "transfer_executable = true",
            "should_transfer_files = YES",
            "when_to_transfer_output = ON_EXIT_OR_EVICT",
            f"transfer_input_files = {','.join(TRANSFER_INPUT)}",
            f"transfer_output_files = {','.join(TRANSFER_OUTPUT)}",
        ]
    else:
        files = ["transfer_executable = false", "should_transfer_files = NO"]
    lines = [
        "universe = vanilla",
        f"executable = {pod_dir}/job.sh",
        *files,
        f"initialdir = {pod_dir}",
        "output = logs/_job.out",
        "error = logs/_job.err",
        "log = logs/_job.log",
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
        f"+{UID_ATTRIBUTE} = {_quoted(pod.uid)}",
        f"+{NODE_ATTRIBUTE} = {_quoted(node_name)}",
        f"+VkpyPodNamespace = {_quoted(pod.namespace)}",
        f"+VkpyPodName = {_quoted(pod.name)}",
    ]
    for command, value in extra_commands(config_extra or {}, pod.annotations).items():
        lines.append(f"{command} = {value}")
    lines.append("queue")
    return "\n".join(lines) + "\n"


def node_constraint(node_name: str) -> str:
    """The constraint that selects every job of this node."""
    return f"{NODE_ATTRIBUTE} == {_quoted(node_name)}"


def pod_constraint(node_name: str, uid: str) -> str:
    """The constraint that selects the jobs of one pod of this node."""
    return f"{node_constraint(node_name)} && {UID_ATTRIBUTE} == {_quoted(uid)}"
