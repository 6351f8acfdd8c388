"""The commands that read a container's log file on the cluster. Pure.

Following is streamed, not polled: one ``tail --follow`` over an SSH channel sends
lines as the container writes them. It ends by itself when the run ends: a small
watcher waits for the run's ``.done`` marker (or for the job to leave the batch
system's queue, if it was killed before it could write one), and ``tail --pid``
drains the file and exits once the watcher has.
"""

from __future__ import annotations

from vkpy.backends.slurm.queue import ACTIVE_STATES

POLL_SECONDS = 0.5  # how often the watcher looks for the .done marker
JOB_CHECK_EVERY = 20  # ... and every this many looks, whether the job still runs

# Shell tests, run with the job id in "$job", that succeed while the job is queued.
SLURM_QUEUED = (
    f'[ -n "$(squeue --noheader --jobs="$job" --states={ACTIVE_STATES} --format=%i 2>/dev/null)" ]'
)
HTCONDOR_QUEUED = '[ -n "$(condor_q -json "$job" -attributes ClusterId 2>/dev/null)" ]'

# The shell stays the parent of both, so the watcher is reaped when it ends: tail's
# --pid would take a zombie for alive. A queue check that fails to run counts as "gone"
# only after JOB_CHECK_EVERY looks, never at once.
FOLLOW = (
    "done=$1; log=$2; job=$3; shift 3; "
    f'( n=0; while [ ! -e "$done" ]; do sleep {POLL_SECONDS}; n=$((n + 1)); '
    'if [ $((n % {check_every})) = 0 ] && [ -n "$job" ] && ! {queued}; '
    "then break; fi; done ) & watcher=$!; "
    f'tail "$@" --sleep-interval={POLL_SECONDS} --follow=name --retry --pid="$watcher" '
    '-- "$log" & reader=$!; '
    'wait "$watcher"; wait "$reader"'
)


def _start(tail_lines: int | None) -> list[str]:
    if tail_lines is None:
        return ["--bytes=+1"]
    return [f"--lines={max(0, tail_lines)}"]


def read_argv(log: str, *, tail_lines: int | None) -> list[str]:
    """Print the log file (its last ``tail_lines`` lines when given) and end."""
    return ["tail", *_start(tail_lines), "--", log]


def follow_argv(
    log: str,
    done: str,
    *,
    job_id: str,
    tail_lines: int | None,
    queued: str = SLURM_QUEUED,
    check_every: int = JOB_CHECK_EVERY,
) -> list[str]:
    """Print the log file and keep printing what is written to it until the run ends
    (or, when ``job_id`` is given, until the ``queued`` test says the job has left)."""
    script = FOLLOW.replace("{queued}", queued).replace("{check_every}", str(check_every))
    return ["sh", "-c", script, "sh", done, log, job_id, *_start(tail_lines)]
