"""Reaching a pod's running job: where squeue says it runs, and ``srun --overlap`` to
run a command there, inside the job's allocation. Pure.

``--overlap`` lets the step share the CPUs the job script's step holds; one task on
the job's batch host (where the script and its containers run). srun passes the
task's exit code through (128+N for a signal) and, quiet twice, writes nothing of its
own into the session's stderr (its errors neither: the probe has checked the job).
"""

from __future__ import annotations

from collections.abc import Sequence

from vkpy.backends.batch.reach import Placement, Target
from vkpy.backends.batch.state import Phase
from vkpy.backends.slurm import state
from vkpy.backends.slurm.state import JobState

# With the job id in "$job": "<state>|<batch host>|<reason>", or squeue's complaint
# about a job it no longer holds.
WHERE = 'squeue --noheader --jobs="$job" --states=all --format="%T|%B|%r" 2>&1'


def placement(answer: str, job_id: str) -> Placement:
    """Whether the job runs, and on which node, by WHERE's answer."""
    for line in answer.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 3:
            continue
        status, host, reason = fields
        parsed: JobState = state.parse(status)
        if parsed.terminal:
            return Placement(False, why=f"Slurm job {job_id} has ended ({status})")
        if parsed.phase is not Phase.RUNNING or not host or host == "n/a":
            why = f"Slurm job {job_id} is queued ({status}: {reason}): the pod does not run yet"
            return Placement(False, why=why)
        return Placement(True, host=host)
    return Placement(False, why=f"Slurm job {job_id} has ended (it has left the queue)")


def srun_argv(target: Target, argv: Sequence[str], *, tty: bool) -> list[str]:
    return [
        "srun",
        f"--jobid={target.job_id}",
        "--overlap",
        "--quiet",
        "--quiet",  # twice: not even "task 0: Exited with exit code 3" in the stderr
        "--nodes=1",
        "--ntasks=1",
        f"--nodelist={target.host}",
        *(["--pty"] if tty else []),
        *argv,
    ]
