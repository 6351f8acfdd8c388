"""What a pod's status files and Slurm say → its `PodRun`. Pure functions.

The job script appends one line per event to ``status/<container>``::

    start <epoch> <run>          a run of the container began
    exit <code> <epoch> <run>    it ended with exit code <code> (128+N: signal N)
    wait <epoch>                 it waits out its restart back-off until <epoch>

and to ``status/_job``: ``begin <epoch> <host> <job id> <ip>``, ``stop <epoch> <why>``
(why: ``signal`` when Slurm or delete() stopped it, ``deadline`` for
activeDeadlineSeconds) and ``end <code> <epoch>``. vkpy writes ``status/_pod`` (the
pod's identity and containers, JSON) and ``status/_jobid`` at submission.

Slurm's record (`JobView`) says whether the job still runs, and how it ended when the
script could not say it itself (killed at its time limit, node failure, preemption).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from vkpy.backend import ContainerStatus, PodRun, Running, Terminated, Waiting
from vkpy.backends.slurm import naming
from vkpy.backends.slurm.naming import Layout
from vkpy.backends.slurm.state import Ending, JobState, Phase, ending

DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
LOST_EXIT_CODE = 137


@dataclass(frozen=True)
class PodMeta:
    """The pod as vkpy submitted it (``status/_pod``)."""

    namespace: str
    name: str
    init: tuple[str, ...]
    containers: tuple[str, ...]
    images: Mapping[str, str] = field(default_factory=dict, hash=False)
    restart_policy: str = "Never"
    reports_ip: bool = True

    def to_json(self) -> str:
        return json.dumps(
            {
                "namespace": self.namespace,
                "name": self.name,
                "init": list(self.init),
                "containers": list(self.containers),
                "images": dict(self.images),
                "restart_policy": self.restart_policy,
                "reports_ip": self.reports_ip,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> PodMeta | None:
        try:
            data = json.loads(text)
            return cls(
                namespace=str(data["namespace"]),
                name=str(data["name"]),
                init=tuple(str(c) for c in data["init"]),
                containers=tuple(str(c) for c in data["containers"]),
                images={str(k): str(v) for k, v in data.get("images", {}).items()},
                restart_policy=str(data.get("restart_policy", "Never")),
                reports_ip=bool(data.get("reports_ip", True)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass
class PodFiles:
    """Everything under one pod's ``status/``, as lines."""

    meta: PodMeta | None = None
    job_id: str = ""
    job: list[str] = field(default_factory=list)
    containers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def parse_status_lines(output: str, layout: Layout) -> dict[str, PodFiles]:
    """``grep -H '' status/*`` output (``path:line``) → the files of each pod, by UID."""
    pods: dict[str, PodFiles] = {}
    for line in output.splitlines():
        path, colon, content = line.partition(":")
        where = layout.uid_of_status_file(path) if colon else None
        if where is None:
            continue
        uid, name = where
        files = pods.setdefault(uid, PodFiles())
        if name == naming.META:
            files.meta = PodMeta.from_json(content) or files.meta
        elif name == naming.JOB_ID:
            files.job_id = content.strip().split(";")[0] or files.job_id
        elif name == naming.JOB:
            files.job.append(content)
        else:
            files.containers[name].append(content)
    return pods


# ---------------------------------------------------------------- parsed events


@dataclass(frozen=True)
class Run:
    number: int
    started: datetime
    exit_code: int | None = None
    finished: datetime | None = None


@dataclass(frozen=True)
class History:
    runs: tuple[Run, ...]
    backoff_until: datetime | None = None  # set while waiting to restart


@dataclass(frozen=True)
class JobEvents:
    began: datetime | None = None
    host: str = ""
    ip: str = ""
    stopped: datetime | None = None
    stop_why: str = ""
    ended: datetime | None = None
    exit_code: int | None = None


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(text), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def history(lines: Iterable[str]) -> History:
    runs: list[Run] = []
    backoff: datetime | None = None
    for line in lines:
        words = line.split()
        if len(words) >= 3 and words[0] == "start":
            started, number = _time(words[1]), _int(words[2])
            if started is not None and number is not None:
                runs.append(Run(number, started))
                backoff = None
        elif len(words) >= 4 and words[0] == "exit" and runs and runs[-1].exit_code is None:
            code, finished = _int(words[1]), _time(words[2])
            if code is not None:
                last = runs[-1]
                runs[-1] = Run(last.number, last.started, code, finished)
        elif len(words) >= 2 and words[0] == "wait":
            backoff = _time(words[1])
    return History(tuple(runs), backoff)


def job_events(lines: Iterable[str]) -> JobEvents:
    events = JobEvents()
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "begin":
            # A requeued job begins again: what happened before is history.
            events = JobEvents(
                began=_time(words[1]),
                host=words[2] if len(words) > 2 else "",
                ip=words[4] if len(words) > 4 and words[4] != "-" else "",
            )
        elif len(words) >= 3 and words[0] == "stop" and events.stopped is None:
            events = replace(events, stopped=_time(words[1]), stop_why=words[2])
        elif len(words) >= 3 and words[0] == "end":
            events = replace(events, ended=_time(words[2]), exit_code=_int(words[1]))
    return events


# ---------------------------------------------------------------- the job as a whole


@dataclass(frozen=True)
class JobView:
    """Where the job is, from Slurm's record and the script's own ``_job`` lines."""

    job_id: str
    phase: Phase
    state: JobState | None = None  # Slurm's, when it still knows the job
    slurm_reason: str = ""
    exit_code: int | None = None
    lost: bool = False  # Slurm has no record and the script recorded no end
    # For other batch systems (HTCondor): its name in messages, how it ended the job
    # (instead of Slurm's state), and the message of a waiting job.
    system: str = "Slurm"
    ending: Ending | None = None
    pending: str = ""


def job_view(
    files: PodFiles,
    record: JobState | None,
    *,
    reason: str = "",
    exit_code: int | None = None,
    lost: bool = False,
) -> JobView:
    events = job_events(files.job)
    if record is not None:
        phase = record.phase
        if events.ended is not None and phase is Phase.RUNNING:
            phase = Phase.TERMINATED  # the script ended; Slurm is still completing
        return JobView(files.job_id, phase, record, reason, exit_code)
    if events.ended is not None:
        return JobView(files.job_id, Phase.TERMINATED, None, "", events.exit_code)
    if lost:
        return JobView(files.job_id, Phase.TERMINATED, None, "", None, lost=True)
    # Submitted, not (yet) in any record: running if the script began, else queued.
    return JobView(files.job_id, Phase.RUNNING if events.began else Phase.WAITING)


# ---------------------------------------------------------------- containers


def _terminated(run: Run, *, reason: str | None = None, message: str = "") -> Terminated:
    code = run.exit_code if run.exit_code is not None else LOST_EXIT_CODE
    if reason is None:
        reason = "Completed" if code == 0 else "Error"
    return Terminated(
        exit_code=code,
        reason=reason,
        message=message,
        started_at=run.started,
        finished_at=run.finished,
        signal=code - 128 if code > 128 and run.exit_code is not None else None,
    )


@dataclass(frozen=True)
class _Context:
    view: JobView
    events: JobEvents
    end: Ending | None  # how Slurm or the deadline ended the job, when abnormally
    waiting: Waiting  # for containers that have not run (yet)
    job_id: str


def _stop_reason(ctx: _Context, run: Run) -> tuple[str | None, str]:
    """The reason and message of a run that the job's end cut short, if it was."""
    if ctx.end is None or run.exit_code == 0:
        return None, ""
    if ctx.end.container_reason == "OOMKilled" and run.exit_code == LOST_EXIT_CODE:
        return ctx.end.container_reason, ctx.end.message  # the kernel's SIGKILL
    if ctx.events.stopped is None:
        return None, ""
    if run.finished is not None and run.finished < ctx.events.stopped:
        return None, ""
    return ctx.end.container_reason, ctx.end.message


def container_status(name: str, lines: list[str], image: str, ctx: _Context) -> ContainerStatus:
    past = history(lines)
    runs = past.runs
    if not runs:
        state: Waiting | Running | Terminated = ctx.waiting
        if ctx.view.phase is Phase.TERMINATED:
            reason, message = _never_ran(ctx)
            state = Terminated(exit_code=LOST_EXIT_CODE, reason=reason, message=message)
        return ContainerStatus(name=name, state=state, image=image)
    current = runs[-1]
    last = _terminated(runs[-2]) if len(runs) > 1 else None
    if current.exit_code is None:
        if ctx.view.phase is Phase.RUNNING:
            state = Running(current.started)
        elif ctx.view.phase is Phase.WAITING:  # requeued: the run was cut short
            last = _terminated(current, message="the Slurm job was requeued")
            state = ctx.waiting
        else:  # killed with the job
            reason = ctx.end.container_reason if ctx.end else "Error"
            message = ctx.end.message if ctx.end else _lost_message(ctx)
            if ctx.view.lost:
                reason = "ContainerStatusUnknown"
            state = _terminated(current, reason=reason, message=message)
    else:
        cut_reason, message = _stop_reason(ctx, current)
        ended = _terminated(current, reason=cut_reason, message=message)
        if past.backoff_until is not None and ctx.view.phase is Phase.RUNNING:
            state = Waiting(
                "CrashLoopBackOff",
                f"back-off restarting failed container={name} until "
                f"{past.backoff_until.isoformat()}",
            )
            last = ended
        else:
            state = ended
    return ContainerStatus(
        name=name,
        state=state,
        last_state=last,
        restart_count=current.number,
        image=image,
        container_id=naming.container_id(ctx.job_id, name, current.number),
    )


def _never_ran(ctx: _Context) -> tuple[str, str]:
    if ctx.end is not None:
        return ctx.end.container_reason, f"{ctx.end.message} before the container ran"
    return (
        "ContainerStatusUnknown",
        f"{ctx.view.system} job {ctx.job_id} ended before the container ran",
    )


def _lost_message(ctx: _Context) -> str:
    return f"{ctx.view.system} job {ctx.job_id} ended without recording how the container ended"


def _pending_message(view: JobView) -> str:
    if not view.job_id:
        return f"the {view.system} job is being submitted"
    if view.pending:
        return view.pending
    reason = f": {view.slurm_reason}" if view.slurm_reason else ""
    return f"Slurm job {view.job_id} is queued{reason}"


def pod_run(uid: str, files: PodFiles, view: JobView) -> PodRun | None:
    """The pod's record; None when its files do not say which pod it is."""
    meta = files.meta
    if meta is None:
        return None
    events = job_events(files.job)
    end = view.ending or (ending(view.state) if view.state is not None else None)
    if events.stop_why == "deadline":
        end = Ending("DeadlineExceeded", "DeadlineExceeded", DEADLINE_MESSAGE)
    if view.phase is Phase.WAITING:
        queued = Waiting("ContainerCreating", _pending_message(view))
        init_waiting = app_waiting = queued
    else:
        init_waiting, app_waiting = Waiting("PodInitializing"), Waiting("ContainerCreating")
    ctx = _Context(view, events, end, init_waiting, view.job_id)
    init = tuple(
        container_status(c, files.containers.get(c, []), meta.images.get(c, ""), ctx)
        for c in meta.init
    )
    ended = [s.state for s in init if isinstance(s.state, Terminated)]
    init_failed = any(state.exit_code != 0 for state in ended)
    if len(ended) < len(init) or init_failed:
        app_waiting = Waiting("PodInitializing")
    app_ctx = replace(ctx, waiting=app_waiting)
    apps = tuple(
        ContainerStatus(name=c, state=Waiting("PodInitializing"), image=meta.images.get(c, ""))
        if init_failed and not files.containers.get(c)  # app containers never run
        else container_status(c, files.containers.get(c, []), meta.images.get(c, ""), app_ctx)
        for c in meta.containers
    )
    pod_reason = end.pod_reason if end is not None else ""
    return PodRun(
        uid=uid,
        namespace=meta.namespace,
        name=meta.name,
        containers=apps,
        init_containers=init,
        pod_ip=(events.ip or None) if meta.reports_ip else None,
        reason=pod_reason,
        message=end.message if end is not None and pod_reason else "",
        job_id=view.job_id,
    )


def settling(files: PodFiles, state: JobState | None) -> bool:
    """Whether the script has stopped or ended but Slurm still runs the job: until Slurm
    says how the job ended (a time limit, memory, a cancel), the cause is unknown, and a
    pod reported terminal now could not be corrected later."""
    if state is None or state.terminal:
        return False
    events = job_events(files.job)
    return events.ended is not None or events.stopped is not None


def finished(run: PodRun, view: JobView) -> bool:
    """Whether the record can no longer change: Slurm is done with the job (or has
    forgotten it) and every container has ended."""
    if view.phase is not Phase.TERMINATED or (view.state is not None and not view.state.terminal):
        return False
    return all(not isinstance(c.state, Running) for c in (*run.init_containers, *run.containers))
