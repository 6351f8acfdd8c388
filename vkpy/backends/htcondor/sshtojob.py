"""Reaching a pod's running job: where condor_q says it runs, and ``condor_ssh_to_job``
to run a command in the job's sandbox on its execute node. Pure.

condor_ssh_to_job hands its remote command to ssh, which joins the words with spaces
for the remote shell: the command goes as one word, quoted for that shell. ssh gives a
command a terminal only when asked (``-ssh "ssh -t"``); the exit code is the command's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from vkpy.backends.batch.reach import Placement, Target
from vkpy.transport import command_line

IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5

# With the job id in "$job": its ad, or nothing once it has left the queue.
WHERE = 'condor_q -json "$job" -attributes JobStatus,RemoteHost,HoldReason 2>&1'


def placement(answer: str, job_id: str) -> Placement:
    """Whether the job runs, and on which execute host (its RemoteHost, slot@host)."""
    try:
        ads = json.loads(answer) if answer.strip() else []
    except ValueError:
        return Placement(False, why=f"condor_q did not answer for job {job_id}: {answer[:200]}")
    ad = ads[0] if isinstance(ads, list) and ads and isinstance(ads[0], dict) else None
    if ad is None:
        return Placement(False, why=f"HTCondor job {job_id} has ended (it has left the queue)")
    status = ad.get("JobStatus")
    if status == RUNNING:
        host = str(ad.get("RemoteHost", "")).rpartition("@")[2]
        return Placement(True, host=host)
    if status == IDLE:
        why = f"HTCondor job {job_id} is idle (not matched yet): the pod does not run yet"
    elif status == HELD:
        why = f"HTCondor job {job_id} is held: {ad.get('HoldReason', 'no reason given')}"
    else:
        why = f"HTCondor job {job_id} has ended (status {status})"
    return Placement(False, why=why)


def ssh_to_job_argv(target: Target, argv: Sequence[str], *, tty: bool) -> list[str]:
    return [
        "condor_ssh_to_job",
        *(["-ssh", "ssh -t"] if tty else []),
        target.job_id,
        command_line(argv),
    ]
