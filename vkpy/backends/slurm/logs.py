"""The commands that read a container's log file on the cluster. Pure.

Following is streamed, not polled: one ``tail --follow`` over an SSH channel sends
lines as the container writes them. It ends by itself when the run ends: a small
watcher waits for the run's ``.done`` marker (or for the job to leave the queue, if it
was killed before it could write one), and ``tail --pid`` drains the file and exits
once the watcher has.
"""

from __future__ import annotations

from vkpy.backends.slurm.queue import ACTIVE_STATES

POLL_SECONDS = 0.5  # how often the watcher looks for the .done marker
JOB_CHECK_EVERY = 20  # ... and every this many looks, whether the job still runs

# The shell stays the parent of both, so the watcher is reaped when it ends: tail's
# --pid would take a zombie for alive.
FOLLOW = (
    "done=$1; log=$2; job=$3; shift 3; "
    f'( n=0; while [ ! -e "$done" ]; do sleep {POLL_SECONDS}; n=$((n + 1)); '
    f'if [ $((n % {JOB_CHECK_EVERY})) = 0 ] && [ -n "$job" ] && '
    f'[ -z "$(squeue --noheader --jobs="$job" --states={ACTIVE_STATES} --format=%i '
    '2>/dev/null)" ]; '
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


def follow_argv(log: str, done: str, *, job_id: str, tail_lines: int | None) -> list[str]:
    """Print the log file and keep printing what is written to it until the run ends."""
    return ["sh", "-c", FOLLOW, "sh", done, log, job_id, *_start(tail_lines)]
