"""Reading a container's log file on the cluster: which file, and the commands.

Following is streamed, not polled: one ``tail --follow`` over an SSH channel sends
lines as the container writes them. It ends by itself when the run ends: a small
watcher waits for the run's ``.done`` marker (or for the job to leave the batch
system's queue, if it was killed before it could write one), and ``tail --pid``
drains the file and exits once the watcher has. Whether the job is still queued is a
shell test each batch system gives (``queued``, run with the job id in ``$job``).

The job script stamps every line with the time it came (`template`), so ``since`` and
``timestamps`` are one ``awk`` over the lines read (`FILTER`): no second file, no clock
on the reading side. Pods started before the script stamped lines answer those options
with `UnsupportedLogOption` (HTTP 400).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from vkpy.backend import LogOptions
from vkpy.backends.batch import naming, records
from vkpy.backends.batch.naming import Layout
from vkpy.errors import PodNotFound, PodRejected, UnsupportedLogOption
from vkpy.transport import Runner

POLL_SECONDS = 0.5  # how often the watcher looks for the .done marker
JOB_CHECK_EVERY = 20  # ... and every this many looks, whether the job still runs

# Records the job script stamped (`template`): "<30-character RFC 3339 time> <line>", a
# "+" for the space when no newline followed. The filter leaves out records stamped
# before ``since`` (stamps sort as text, and once one is late enough every later one
# is), and keeps the stamps only when ``ts`` is 1. mawk reads a pipe a whole buffer at a
# time unless told it is interactive: a follow tells it.
FILTER = (
    "p || substr($0, 1, 30) >= since { p = 1; "
    'printf "%s%s%s", (ts ? substr($0, 1, 30) " " : ""), substr($0, 32), '
    '(substr($0, 31, 1) == "+" ? "" : "\\n"); if (flush) fflush() }'
)
_AWK = f'LC_ALL=C $awk -v since="$since" -v ts="$ts" -v flush={{flush}} \'{FILTER}\''
READ_STAMPED = f'since=$1; ts=$2; awk=awk; shift 2; tail "$@" | {_AWK.replace("{flush}", "0")}'
INTERACTIVE = 'awk=awk; if awk -W version 2>&1 | grep -q mawk; then awk="awk -W interactive"; fi; '


# The shell stays the parent of both, so the watcher is reaped when it ends: tail's
# --pid would take a zombie for alive. A queue check that fails to run counts as "gone"
# only after JOB_CHECK_EVERY looks, never at once.
FOLLOW = (
    "done=$1; log=$2; job=$3; since=$4; ts=$5; shift 5; {interactive}"
    f'( n=0; while [ ! -e "$done" ]; do sleep {POLL_SECONDS}; n=$((n + 1)); '
    'if [ $((n % {check_every})) = 0 ] && [ -n "$job" ] && ! {queued}; '
    "then break; fi; done ) & watcher=$!; "
    f'tail "$@" --sleep-interval={POLL_SECONDS} --follow=name --retry --pid="$watcher" '
    '-- "$log" {filter}& reader=$!; '
    'wait "$watcher"; wait "$reader"'
)


@dataclass(frozen=True)
class Stamps:
    """How to show a log whose lines the job script stamped."""

    since: str = ""  # a stamp (`stamp`): lines stamped before it are left out
    timestamps: bool = False  # keep each line's stamp (kubectl logs --timestamps)

    @classmethod
    def of(cls, options: LogOptions) -> Stamps:
        since = stamp(options.since) if options.since is not None else ""
        return cls(since=since, timestamps=options.timestamps)


def stamp(when: datetime) -> str:
    """``when`` as the job script stamps lines: RFC 3339 in UTC, nine decimals."""
    utc = when.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond * 1000:09d}Z"


def _start(tail_lines: int | None) -> list[str]:
    if tail_lines is None:
        return ["--bytes=+1"]
    return [f"--lines={max(0, tail_lines)}"]


def read_argv(log: str, *, tail_lines: int | None, stamps: Stamps | None = None) -> list[str]:
    """Print the log file (its last ``tail_lines`` lines when given) and end; ``stamps``
    for a log whose lines the job script stamped (None: the file as it is)."""
    if stamps is None:
        return ["tail", *_start(tail_lines), "--", log]
    shown = "1" if stamps.timestamps else "0"
    return ["sh", "-c", READ_STAMPED, "sh", stamps.since, shown, *_start(tail_lines), "--", log]


def follow_argv(
    log: str,
    done: str,
    *,
    job_id: str,
    tail_lines: int | None,
    queued: str,
    check_every: int = JOB_CHECK_EVERY,
    stamps: Stamps | None = None,
) -> list[str]:
    """Print the log file and keep printing what is written to it until the run ends
    (or, when ``job_id`` is given, until the ``queued`` test says the job has left);
    ``stamps`` as for `read_argv`."""
    script = (
        FOLLOW.replace("{queued}", queued)
        .replace("{check_every}", str(check_every))
        .replace("{filter}", "" if stamps is None else f"| {_AWK.replace('{flush}', '1')} ")
        .replace("{interactive}", "" if stamps is None else INTERACTIVE)
    )
    since, shown = ("", "0") if stamps is None else (stamps.since, str(int(stamps.timestamps)))
    return ["sh", "-c", script, "sh", done, log, job_id, since, shown, *_start(tail_lines)]


async def stream_log(runner: Runner, argv: Sequence[str]) -> AsyncIterator[bytes]:
    """What ``argv`` prints, as it comes."""
    async with runner.stream(argv) as stream:
        async for chunk in stream.chunks():
            yield chunk


async def log_argv(
    runner: Runner,
    layout: Layout,
    uid: str,
    container: str,
    options: LogOptions,
    *,
    system: str,
    queued: str,
) -> Sequence[str]:
    """The command that reads (or follows) the log of the run ``options`` asks for;
    ``queued``: the batch system's shell test (see the module docstring); a follow also
    ends when the job leaves the queue without marking the run done."""
    try:
        status = layout.status(uid)
    except PodRejected as exc:
        raise PodNotFound(f"no pod with uid {uid}") from exc
    wanted = [f"{status}/{name}" for name in (naming.META, naming.JOB_ID, container)]
    answer = await runner.run(["grep", "-a", "-H", "-s", "", *wanted], idempotent=True)
    files = records.parse_status_lines(answer.text, layout).get(uid)
    if files is None or files.meta is None:
        raise PodNotFound(f"no pod with uid {uid} in {system}")
    where = f"{files.meta.namespace}/{files.meta.name}"
    if container not in (*files.meta.init, *files.meta.containers):
        raise PodNotFound(f"pod {where} has no container {container}")
    runs = records.history(files.containers.get(container, [])).runs
    if options.previous and len(runs) < 2:
        raise PodNotFound(f"container {container} of {where} has not restarted")
    if not runs:
        raise PodNotFound(f"container {container} of {where} has not started yet")
    run = runs[-2] if options.previous else runs[-1]
    stamps = Stamps.of(options) if files.meta.stamped_logs else None
    if stamps is None and (options.since is not None or options.timestamps):
        raise UnsupportedLogOption(
            f"container {container} of {where} was started by a vkpy that did not stamp "
            "its log lines: its logs have no times for sinceSeconds, sinceTime or timestamps"
        )
    path = layout.log(uid, container, run.number)
    if options.follow and run.exit_code is None and not options.previous:
        done = layout.log_done(uid, container, run.number)
        return follow_argv(
            path,
            done,
            job_id=files.job_id,
            tail_lines=options.tail_lines,
            queued=queued,
            stamps=stamps,
        )
    return read_argv(path, tail_lines=options.tail_lines, stamps=stamps)
