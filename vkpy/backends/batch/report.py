"""A pod's status files and its batch system's word on the job → its `PodRun`. Pure.

The job script records what it can itself (`records`); the batch system's record
(`JobView`, which each system builds from its own states) says whether the job still
runs, and how it ended when the script could not say it itself (killed at its time
limit, node failure, preemption, removal).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vkpy.backend import ContainerStatus, PodRun, Running, Terminated, Waiting
from vkpy.backends.batch import naming
from vkpy.backends.batch.records import JobEvents, PodFiles, Run, history, job_events
from vkpy.backends.batch.state import Ending, Phase

DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
LOST_EXIT_CODE = 137


# ---------------------------------------------------------------- the job as a whole


@dataclass(frozen=True)
class JobView:
    """Where the job is: what its batch system says, or (``said`` None in `job_view`)
    what the script's own ``_job`` lines say."""

    job_id: str
    phase: Phase
    system: str  # "Slurm", "HTCondor": for messages and container IDs
    ending: Ending | None = None  # how the batch system ended the job, when abnormally
    reason: str = ""  # why a waiting job waits, as a sentence ("Slurm job 7 is queued: ...")
    exit_code: int | None = None  # the job's, as the batch system recorded it
    lost: bool = False  # the batch system has no record and the script recorded no end
    pending: bool = False  # the batch system is not done with the job yet (it completes)


def job_view(files: PodFiles, said: JobView | None, *, system: str, lost: bool = False) -> JobView:
    """The job's view: ``said`` (the batch system's), unless the script has ended while
    the system still shows it running; without ``said``, the script's own lines."""
    events = job_events(files.job)
    if said is not None:
        if events.ended is not None and said.phase is Phase.RUNNING:
            return replace(said, phase=Phase.TERMINATED)  # the system still completes it
        return said
    if events.ended is not None:
        return JobView(files.job_id, Phase.TERMINATED, system, exit_code=events.exit_code)
    if lost:
        return JobView(files.job_id, Phase.TERMINATED, system, lost=True)
    # Submitted, not (yet) in any record: running if the script began, else queued.
    return JobView(files.job_id, Phase.RUNNING if events.began else Phase.WAITING, system)


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
    end: Ending | None  # how the batch system or the deadline ended the job, when abnormally
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
            last = _terminated(current, message=f"the {ctx.view.system} job was requeued")
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
        image_id=_image_id(past.image_id),
        container_id=naming.container_id(ctx.view.system.lower(), ctx.job_id, name, current.number),
    )


def _image_id(value: str) -> str:
    """Podman's image ID as the kubelet shows one: ``sha256:<hex>``."""
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"sha256:{value}"
    return value


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
    return view.reason or f"{view.system} job {view.job_id} is queued"


def pod_run(uid: str, files: PodFiles, view: JobView) -> PodRun | None:
    """The pod's record; None when its files do not say which pod it is."""
    meta = files.meta
    if meta is None:
        return None
    events = job_events(files.job)
    end = view.ending
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


def finished(run: PodRun, view: JobView) -> bool:
    """Whether the record can no longer change: the batch system is done with the job
    (or has forgotten it) and every container has ended."""
    if view.phase is not Phase.TERMINATED or view.pending:
        return False
    return all(not isinstance(c.state, Running) for c in (*run.init_containers, *run.containers))
