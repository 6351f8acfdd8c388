"""Reading Slurm: the squeue and sacct commands vkpy runs, and their output parsed. Pure.

One ``squeue --me -t all`` lists every job of the login user that Slurm still holds
(running, queued, and finished ones for MinJobAge); this node's are picked out by
their names. Jobs that left the queue are looked up with one ``sacct`` for all of them:
``sacct`` when the cluster has slurmdbd, ``sacct -c`` (the jobcomp file) when not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vkpy.backend import Capacity
from vkpy.backends.slurm import naming, state
from vkpy.backends.slurm.state import JobState

SQUEUE_FORMAT = "%i|%T|%j|%r|%k"
SINFO_FORMAT = "%n|%c|%m|%G"
MIB = 1024 * 1024
SACCT_FIELDS = "jobid,jobname,state,exitcode"
ACTIVE_STATES = "PD,CF,R,CG,S,ST,RQ,RH,RF,RD,RS,SI,SO,SE"
# A shell test, run with the job id in "$job", that succeeds while the job is queued.
QUEUED_TEST = (
    f'[ -n "$(squeue --noheader --jobs="$job" --states={ACTIVE_STATES} --format=%i 2>/dev/null)" ]'
)


@dataclass(frozen=True)
class JobRecord:
    """What Slurm says about one job."""

    job_id: str
    state: JobState
    name: str = ""
    reason: str = ""  # squeue's pending or end reason (Resources, TimeLimit...)
    exit_code: int | None = None  # sacct only: as a shell reports it (128+N for signal N)
    signal: int | None = None


def squeue_argv(
    *, names: Sequence[str] = (), active_only: bool = False, federation: bool = False
) -> list[str]:
    """The login user's jobs; outside a federation, the local cluster's only (``--local``
    spares slurmctld the federation lookup, one RPC of the three a squeue costs)."""
    argv = ["squeue", "--me", "--noheader", f"--format={SQUEUE_FORMAT}"]
    if not federation:
        argv.append("--local")
    argv.append(f"--states={ACTIVE_STATES if active_only else 'all'}")
    if names:
        argv.append(f"--name={','.join(names)}")
    return argv


def parse_squeue(output: str, node: str) -> dict[str, JobRecord]:
    """This node's jobs in squeue's output, by pod UID (the newest job wins)."""
    found: dict[str, JobRecord] = {}
    for line in output.splitlines():
        fields = line.split("|", 4)
        if len(fields) < 4:
            continue
        job_id, status, name, reason = (f.strip() for f in fields[:4])
        uid = naming.uid_of_job(name, node)
        if uid is None or not job_id:
            continue
        record = JobRecord(job_id, state.parse(status), name, "" if reason == "None" else reason)
        previous = found.get(uid)
        if previous is None or _newer(record.job_id, previous.job_id):
            found[uid] = record
    return found


def _newer(a: str, b: str) -> bool:
    try:
        return int(a.split("_", maxsplit=1)[0]) > int(b.split("_", maxsplit=1)[0])
    except ValueError:
        return a > b


def sacct_argv(job_ids: Iterable[str], *, jobcomp: bool) -> list[str]:
    argv = ["sacct", "--noheader", "--parsable2", f"--format={SACCT_FIELDS}"]
    argv += ["--completion"] if jobcomp else ["--allocations"]
    argv.append(f"--jobs={','.join(sorted(set(job_ids)))}")
    return argv


def parse_sacct(output: str) -> dict[str, JobRecord]:
    """sacct's records by job id; a job listed twice (requeued) keeps its last line."""
    found: dict[str, JobRecord] = {}
    for line in output.splitlines():
        fields = line.split("|")
        if len(fields) < 4 or "." in fields[0]:  # job steps (123.batch) are not jobs
            continue
        job_id, name, status, exit_text = (f.strip() for f in fields[:4])
        code, signal = state.exit_code(exit_text)
        found[job_id] = JobRecord(job_id, state.parse(status), name, "", code, signal)
    return found


def sinfo_argv(partition: str | None) -> list[str]:
    argv = ["sinfo", "--noheader", "--Node", f"--format={SINFO_FORMAT}"]
    if partition:
        argv.append(f"--partition={partition}")
    return argv


def parse_sinfo(output: str, *, pods: int) -> Capacity | None:
    """`sinfo_argv`'s output → the nodes' totals (each node once)."""
    nodes: dict[str, tuple[int, int, int]] = {}
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4:
            continue
        try:
            cpus, memory = int(fields[1]), int(fields[2].rstrip("+"))
        except ValueError:
            continue
        nodes[fields[0]] = (cpus, memory, _gpus(fields[3]))
    if not nodes:
        return None
    return Capacity(
        cpu_millis=sum(n[0] for n in nodes.values()) * 1000,
        memory_bytes=sum(n[1] for n in nodes.values()) * MIB,
        pods=pods,
        gpus=sum(n[2] for n in nodes.values()),
    )


def _gpus(gres: str) -> int:
    """GPUs in a node's gres, e.g. ``gpu:a100:4(S:0-1),shard:8`` → 4."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2:
            with contextlib.suppress(ValueError):
                total += int(parts[-1])
    return total
