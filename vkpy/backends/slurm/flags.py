"""sbatch flags: from the configuration, the pod's annotations and its resources. Pure.

Annotations under ``slurm.vkpy.io/``: ``partition``, ``account``, ``qos`` (one value
each) and ``flags`` (extra sbatch flags, split like a shell would, never run by one).
Every extra flag is checked: it must be a full sbatch option name (sbatch takes
unambiguous abbreviations, so ``--out`` would be ``--output``) written as one word
(``--flag=value`` or ``-Xvalue``), and not one that breaks what vkpy relies on: where
output goes, the job's name and comment, its working directory, its environment,
requeueing and signals, waiting, arrays, other clusters. Anything else is refused with
`PodRejected`, so the pod fails with a message instead of a job doing the unexpected.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vkpy.backend import Container, PodSpec
from vkpy.errors import PodRejected

ANNOTATION_PREFIX = "slurm.vkpy.io/"
VALUE_ANNOTATIONS = ("partition", "account", "qos")
FLAGS_ANNOTATION = "flags"
MIB = 1024 * 1024

# sbatch 22.05's long options (`sbatch --help`).
LONG_OPTIONS = frozenset(
    [
        "account",
        "array",
        "bb",
        "bbf",
        "begin",
        "chdir",
        "cluster-constraint",
        "clusters",
        "comment",
        "constraint",
        "container",
        "contiguous",
        "core-spec",
        "cores-per-socket",
        "cpu-freq",
        "cpus-per-gpu",
        "cpus-per-task",
        "deadline",
        "delay-boot",
        "dependency",
        "distribution",
        "error",
        "exclude",
        "exclusive",
        "export",
        "export-file",
        "extra-node-info",
        "get-user-env",
        "gid",
        "gpu-bind",
        "gpu-freq",
        "gpus",
        "gpus-per-node",
        "gpus-per-socket",
        "gpus-per-task",
        "gres",
        "gres-flags",
        "help",
        "hold",
        "ignore-pbs",
        "input",
        "job-name",
        "licenses",
        "mail-type",
        "mail-user",
        "mcs-label",
        "mem",
        "mem-per-cpu",
        "mem-per-gpu",
        "mincpus",
        "nice",
        "no-kill",
        "no-requeue",
        "nodefile",
        "nodelist",
        "nodes",
        "ntasks",
        "ntasks-per-core",
        "ntasks-per-node",
        "ntasks-per-socket",
        "output",
        "overcommit",
        "oversubscribe",
        "parsable",
        "partition",
        "power",
        "priority",
        "profile",
        "propagate",
        "qos",
        "quiet",
        "reboot",
        "requeue",
        "reservation",
        "signal",
        "sockets-per-node",
        "spread-job",
        "switches",
        "thread-spec",
        "threads-per-core",
        "time",
        "time-min",
        "tmp",
        "uid",
        "usage",
        "use-min-nodes",
        "verbose",
        "version",
        "wait",
        "wckey",
        "wrap",
    ]
)
# Short options that take a value (attached: -pgpu) and those that take none.
SHORT_WITH_VALUE = frozenset("aAbcdDeiJLmMnNopqStCFwxG")
SHORT_WITHOUT_VALUE = frozenset("HkOQsvWhV")
SHORT_NAMES = {
    "a": "array",
    "D": "chdir",
    "e": "error",
    "F": "nodefile",
    "h": "help",
    "i": "input",
    "J": "job-name",
    "M": "clusters",
    "o": "output",
    "V": "version",
    "W": "wait",
}
# Flags that would break the contract between vkpy and its jobs, with the reason.
REFUSED = {
    "output": "vkpy writes each container's output to its own log file",
    "error": "vkpy writes each container's output to its own log file",
    "input": "the job script reads no input",
    "wrap": "vkpy submits its own job script",
    "chdir": "the job runs in the pod's work directory",
    "parsable": "vkpy sets it to read the job id",
    "job-name": "the job name carries the pod UID",
    "comment": "the comment names the pod",
    "array": "one pod is one job",
    "export": "the job needs the login environment to run its containers",
    "export-file": "the job needs the login environment to run its containers",
    "get-user-env": "the job needs the login environment to run its containers",
    "uid": "jobs run as the login user",
    "gid": "jobs run as the login user",
    "wait": "sbatch must return at once",
    "requeue": "the pod's restartPolicy decides requeueing",
    "no-requeue": "the pod's restartPolicy decides requeueing",
    "signal": "vkpy stops containers itself within the grace period",
    "container": "containers run under the configured runtime",
    "clusters": "status is read from the login node's own cluster",
    "cluster-constraint": "status is read from the login node's own cluster",
    "nodefile": "it reads a file on the login node",
    "bbf": "it reads a file on the login node",
    "help": "sbatch would submit nothing",
    "usage": "sbatch would submit nothing",
    "version": "sbatch would submit nothing",
}
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_.,:+%@=/-]+$")


def check_flag(flag: str, *, source: str) -> str:
    """``flag`` when vkpy may pass it to sbatch; `PodRejected` naming ``source`` if not."""
    if flag.startswith("--"):
        name = flag[2:].split("=", 1)[0]
        if name not in LONG_OPTIONS:
            raise PodRejected(
                f"{source}: {flag!r} is not an sbatch option (write full option names)"
            )
    elif flag.startswith("-") and len(flag) >= 2:
        letter = flag[1]
        if letter in SHORT_WITHOUT_VALUE and len(flag) != 2:
            raise PodRejected(f"{source}: write {flag[:2]!r} alone, one flag per word")
        if letter in SHORT_WITH_VALUE and len(flag) == 2:
            raise PodRejected(f"{source}: attach the value: {flag}VALUE (one word)")
        if letter not in SHORT_WITH_VALUE | SHORT_WITHOUT_VALUE:
            raise PodRejected(f"{source}: {flag!r} is not an sbatch option")
        name = SHORT_NAMES.get(letter, "")
    else:
        raise PodRejected(
            f"{source}: {flag!r} is not a flag; write each flag as one word, "
            "--flag=value or -Xvalue"
        )
    if name in REFUSED:
        raise PodRejected(f"{source}: {flag!r} is not allowed: {REFUSED[name]}")
    return flag


def check_flags(flags: Iterable[str], *, source: str) -> list[str]:
    return [check_flag(flag, source=source) for flag in flags]


def annotation_flags(annotations: Mapping[str, str]) -> list[str]:
    """The sbatch flags a pod's ``slurm.vkpy.io/`` annotations ask for, checked."""
    flags: list[str] = []
    for key in sorted(annotations):
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        what, value = key[len(ANNOTATION_PREFIX) :], str(annotations[key])
        if what in VALUE_ANNOTATIONS:
            if not _PLAIN_VALUE.match(value):
                raise PodRejected(f"annotation {key}: {value!r} is not a plain {what} name")
            flags.append(f"--{what}={value}")
        elif what == FLAGS_ANNOTATION:
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise PodRejected(f"annotation {key}: cannot split {value!r}: {exc}") from exc
            flags.extend(check_flags(words, source=f"annotation {key}"))
        else:
            known = ", ".join(ANNOTATION_PREFIX + k for k in (*VALUE_ANNOTATIONS, FLAGS_ANNOTATION))
            raise PodRejected(f"unknown annotation {key}; vkpy knows {known}")
    return flags


@dataclass(frozen=True)
class JobResources:
    """What the job asks Slurm for: the pod's effective requests, like the scheduler's."""

    cpus: int | None = None
    memory_mib: int | None = None
    gpus: int = 0

    def flags(self) -> list[str]:
        flags = []
        if self.cpus is not None:
            flags.append(f"--cpus-per-task={self.cpus}")
        if self.memory_mib is not None:
            flags.append(f"--mem={self.memory_mib}M")
        if self.gpus:
            flags.append(f"--gres=gpu:{self.gpus}")
        return flags


def _effective(apps: Sequence[int | None], inits: Sequence[int | None]) -> int | None:
    """max(sum over app containers, max over init containers), as Kubernetes counts."""
    known_apps = [v for v in apps if v is not None]
    known_inits = [v for v in inits if v is not None]
    if not known_apps and not known_inits:
        return None
    return max(sum(known_apps), max(known_inits, default=0))


def job_resources(pod: PodSpec) -> JobResources:
    def values(containers: Sequence[Container], what: str) -> list[int | None]:
        return [getattr(c.resources, what) for c in containers]

    millis = _effective(
        values(pod.containers, "cpu_millis"), values(pod.init_containers, "cpu_millis")
    )
    memory = _effective(
        values(pod.containers, "memory_bytes"), values(pod.init_containers, "memory_bytes")
    )
    gpus = _effective(values(pod.containers, "gpus"), values(pod.init_containers, "gpus"))
    return JobResources(
        cpus=max(1, math.ceil(millis / 1000)) if millis else None,
        memory_mib=max(1, math.ceil(memory / MIB)) if memory else None,
        gpus=gpus or 0,
    )


def time_limit(active_deadline_seconds: int | None) -> str | None:
    """``--time`` in whole minutes, rounded up (Slurm's resolution is a minute)."""
    if active_deadline_seconds is None:
        return None
    return f"--time={max(1, math.ceil(active_deadline_seconds / 60))}"
