"""What Podman holds → what vkpy reports: `PodRun` and `ContainerStatus`. Pure functions.

The newest instance of a container is its state, the one before it its ``last_state``;
a container waiting out its restart back-off is ``Waiting("CrashLoopBackOff")`` with
the run that ended as ``last_state``.

Reasons: Completed (exit 0), Error (non-zero), OOMKilled when inspect says so. On a
cgroup v1 host (these test machines) Podman never sets OOMKilled: a container killed
for memory shows exit code 137 and reason Error. A container that could not be started
at all is reported Terminated with exit code 128 and reason StartError. With Podman's
init as PID 1, a command that does not exist is exit code 1 (the init's message is in
the logs), not the 127/128 of runtimes without one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from vkpy.backend import SANDBOX_FAILED, ContainerStatus, PodRun, Running, Terminated, Waiting
from vkpy.backends.podman.observed import START_ERROR_EXIT_CODE, History, Instance, PodState
from vkpy.backends.podman.progress import deadline_exceeded, init_progress, wants_restart

DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def terminated(instance: Instance) -> Terminated:
    if instance.oom_killed:
        reason = "OOMKilled"
    elif instance.exit_code == 0:
        reason = "Completed"
    elif instance.exit_code == START_ERROR_EXIT_CODE and instance.error:
        reason = "StartError"
    else:
        reason = "Error"
    return Terminated(
        exit_code=instance.exit_code,
        reason=reason,
        message=instance.error,
        started_at=instance.started_at,
        finished_at=instance.finished_at,
    )


def _image_id(value: str) -> str:
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"sha256:{value}"
    return value


def container_status(
    history: History,
    pod: PodState,
    *,
    waiting_reason: str,
    waiting_message: str = "",
    restarting: bool,
    delay: Callable[[int], float],
    now: float,
) -> ContainerStatus:
    current = history.current
    last = terminated(history.previous) if history.previous else None
    state: Waiting | Running | Terminated
    if current.running:
        state = Running(current.started_at or datetime.fromtimestamp(now, UTC))
    elif current.ended and restarting:
        back_off = delay(current.restart_count)
        state = Waiting(
            "CrashLoopBackOff",
            f"back-off {back_off:g}s restarting failed container={history.name} "
            f"pod={pod.name}_{pod.namespace}({pod.uid})",
        )
        last = terminated(current)
    elif current.ended:
        state = terminated(current)
    else:
        state = Waiting(waiting_reason, waiting_message)
    return ContainerStatus(
        name=history.name,
        state=state,
        last_state=last,
        restart_count=current.restart_count,
        image=current.image,
        image_id=_image_id(current.image_id),
        container_id=f"podman://{current.id}",
    )


def pod_run(
    pod: PodState,
    *,
    now: float,
    delay: Callable[[int], float],
    pod_ip: str | None = None,
    sandbox_error: str = "",
) -> PodRun:
    """``sandbox_error``: why the pod's sandbox last failed, while it is retried."""
    message = f"{SANDBOX_FAILED}{sandbox_error}" if sandbox_error else ""
    exceeded = deadline_exceeded(pod, now)
    progress, active = init_progress(pod)
    init_statuses = tuple(
        container_status(
            history,
            pod,
            waiting_reason="PodInitializing",
            waiting_message=message,
            restarting=(not exceeded and history is active and wants_restart(history, pod.policy)),
            delay=delay,
            now=now,
        )
        for history in pod.init
    )
    app_reason = "ContainerCreating" if progress == "done" else "PodInitializing"
    app_statuses = tuple(
        container_status(
            history,
            pod,
            waiting_reason=app_reason,
            waiting_message=message,
            restarting=not exceeded and wants_restart(history, pod.policy),
            delay=delay,
            now=now,
        )
        for history in pod.app
    )
    return PodRun(
        uid=pod.uid,
        namespace=pod.namespace,
        name=pod.name,
        containers=app_statuses,
        init_containers=init_statuses,
        pod_ip=pod_ip,
        reason="DeadlineExceeded" if exceeded else "",
        message=DEADLINE_MESSAGE if exceeded else "",
        job_id=pod.pod,
    )


def pod_runs(
    pods: Mapping[str, PodState],
    *,
    now: float,
    delay: Callable[[int], float],
    pod_ips: Mapping[str, str | None],
    sandbox_errors: Mapping[str, str],
) -> dict[str, PodRun]:
    return {
        uid: pod_run(
            pod,
            now=now,
            delay=delay,
            pod_ip=pod_ips.get(uid),
            sandbox_error=sandbox_errors.get(uid, ""),
        )
        for uid, pod in pods.items()
    }
