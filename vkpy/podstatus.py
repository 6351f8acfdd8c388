"""Pod status as the kubelet writes it, computed from what the backend reports.

Pure functions: an API pod (dict), the backend's `PodRun` (or None) and the agent's
own observations in; the ``status`` dict out. The phase follows the kubelet's rules:
init containers first, then the app containers' states and the restart policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from vkpy.backend import ContainerStatus, PodRun, Running, Terminated, Waiting
from vkpy.jsontypes import JSON
from vkpy.kube.times import rfc3339

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class Observation:
    """What the agent knows about a pod besides the backend's record."""

    run: PodRun | None = None
    node_ip: str = ""
    started: datetime | None = None  # when the agent began to run the pod
    waiting: Waiting | None = None  # why containers that have not started are waiting
    failure: tuple[str, str] | None = None  # (reason, message): the pod failed for good


def _state(state: Waiting | Running | Terminated) -> JSON:
    if isinstance(state, Waiting):
        return {"waiting": _compact({"reason": state.reason, "message": state.message})}
    if isinstance(state, Running):
        return {"running": {"startedAt": rfc3339(state.started_at)}}
    terminated: JSON = {"exitCode": state.exit_code, "reason": state.reason}
    if state.message:
        terminated["message"] = state.message
    if state.signal is not None:
        terminated["signal"] = state.signal
    if state.started_at is not None:
        terminated["startedAt"] = rfc3339(state.started_at)
    if state.finished_at is not None:
        terminated["finishedAt"] = rfc3339(state.finished_at)
    return {"terminated": terminated}


def _compact(values: JSON) -> JSON:
    return {k: v for k, v in values.items() if v not in ("", None)}


def _container_status(
    spec: JSON, seen: ContainerStatus | None, default: Waiting, *, init: bool = False
) -> JSON:
    state = seen.state if seen is not None else default
    # An init container is ready once it completed (pkg/kubelet/prober/prober_manager.go,
    # UpdatePodStatus); an app container while it runs (vkpy runs no probes).
    if init:
        ready = isinstance(state, Terminated) and state.exit_code == 0
    else:
        ready = isinstance(state, Running)
    status: JSON = {
        "name": spec["name"],
        "image": spec.get("image", ""),
        "imageID": seen.image_id if seen is not None else "",
        "ready": ready,
        "restartCount": seen.restart_count if seen is not None else 0,
        "started": isinstance(state, Running),
        "state": _state(state),
        "lastState": _state(seen.last_state) if seen and seen.last_state else {},
    }
    if seen is not None and seen.container_id:
        status["containerID"] = seen.container_id
    return status


def _created(seen: ContainerStatus | None, initialized: bool) -> ContainerStatus | None:
    """A kubelet creates app containers only once the init containers are done: a
    backend that made them up front (a Podman pod) has them waiting with IDs that a
    kubelet would not show yet."""
    if initialized or seen is None or not isinstance(seen.state, Waiting):
        return seen
    return None


def _by_name(statuses: tuple[ContainerStatus, ...]) -> dict[str, ContainerStatus]:
    return {s.name: s for s in statuses}


def _succeeded(status: ContainerStatus | None) -> bool:
    return (
        status is not None and isinstance(status.state, Terminated) and status.state.exit_code == 0
    )


def _init_phase(specs: list[JSON], seen: dict[str, ContainerStatus], policy: str) -> str | None:
    """'Pending' while init containers run, 'Failed' if one failed for good, else None."""
    for spec in specs:
        status = seen.get(spec["name"])
        if _succeeded(status):
            continue
        if status is not None and isinstance(status.state, Terminated) and policy == "Never":
            return "Failed"
        return "Pending"
    return None


def phase(pod: JSON, run: PodRun | None) -> str:  # noqa: PLR0912 - the kubelet's cases
    """The kubelet's pod phase for what the backend reports."""
    spec = pod.get("spec", {})
    policy = spec.get("restartPolicy", "Always")
    if run is None:
        return "Pending"
    init = _init_phase(spec.get("initContainers") or [], _by_name(run.init_containers), policy)
    if init is not None:
        return init
    seen = _by_name(run.containers)
    running = waiting = stopped = succeeded = 0
    for container in spec.get("containers") or []:
        status = seen.get(container["name"])
        if status is None:
            waiting += 1
        elif isinstance(status.state, Running):
            running += 1
        elif isinstance(status.state, Terminated):
            stopped += 1
            succeeded += status.state.exit_code == 0
        elif status.last_state is not None:
            stopped += 1  # waiting to restart: it ran before
        else:
            waiting += 1
    if run.reason == "DeadlineExceeded":
        return "Failed"
    if running:
        return "Running"
    if stopped and not waiting:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Running" if policy == "OnFailure" else "Failed"
    if stopped:
        return "Running"
    return "Pending"


def _condition(
    kind: str,
    ok: bool,
    now: str,
    previous: dict[str, JSON],
    *,
    reason: str = "",
    message: str = "",
) -> JSON:
    value = "True" if ok else "False"
    before = previous.get(kind)
    since = before["lastTransitionTime"] if before and before.get("status") == value else now
    condition: JSON = {
        "type": kind,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _names(names: list[str]) -> str:
    """A list of names as Go's %s prints a []string: ``[a b]``."""
    return f"[{' '.join(names)}]"


# The conditions a kubelet owns (kubetypes.PodConditionsByKubelet); any other type is
# another writer's (a readiness gate's controller, say) and is kept as it is.
KUBELET_CONDITIONS = frozenset(
    {"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"}
)


def _unready_gates(spec: JSON, previous: dict[str, JSON]) -> str:
    """Why the pod's readiness gates hold Ready back, as generatePodReadyCondition says."""
    reasons = []
    for gate in spec.get("readinessGates") or []:
        kind = json.dumps(gate.get("conditionType", ""))  # Go's %q
        found = previous.get(gate.get("conditionType", ""))
        if found is None:
            reasons.append(f"corresponding condition of pod readiness gate {kind} does not exist.")
        elif found.get("status") != "True":
            status = found.get("status")
            reasons.append(f'the status of pod readiness gate {kind} is not "True", but {status}')
    return ", ".join(reasons)


def _conditions(
    pod_phase: str, run: PodRun | None, init: list[JSON], apps: list[JSON], gates: str
) -> list[tuple[str, bool, str, str]]:
    """Initialized, Ready and ContainersReady as (type, ok, reason, message), from the
    container statuses written (pkg/kubelet/status/generate.go)."""
    incomplete = [c["name"] for c in init if not c["ready"]]  # isInitContainerInitialized
    app_started = any(c["started"] or "terminated" in c["state"] for c in apps)
    if pod_phase == "Succeeded":
        initialized = ("Initialized", True, "PodCompleted", "")
    elif not init or app_started or not incomplete:
        initialized = ("Initialized", True, "", "")
    else:
        message = f"containers with incomplete status: {_names(incomplete)}"
        initialized = ("Initialized", False, "ContainersNotInitialized", message)
    unready = [c["name"] for c in apps if not c["ready"]]
    if pod_phase in TERMINAL_PHASES:  # generateContainersReadyConditionForTerminalPhase
        ready = (False, "PodCompleted" if pod_phase == "Succeeded" else "PodFailed", "")
    elif unready or not apps:
        ready = (False, "ContainersNotReady", f"containers with unready status: {_names(unready)}")
    else:
        ready = (True, "", "")
    # Ready also waits for the readiness gates; ContainersReady does not.
    pod_ready = (False, "ReadinessGatesNotReady", gates) if ready[0] and gates else ready
    return [initialized, ("Ready", *pod_ready), ("ContainersReady", *ready)]


def pod_status(pod: JSON, seen: Observation, now: datetime) -> JSON:
    """The full ``status`` the kubelet would write for ``pod`` now."""
    spec = pod.get("spec", {})
    old = pod.get("status") or {}
    stamp = rfc3339(now)
    run = seen.run
    pod_phase = "Failed" if seen.failure is not None else phase(pod, run)
    init_specs = spec.get("initContainers") or []
    init_seen = _by_name(run.init_containers) if run else {}
    app_seen = _by_name(run.containers) if run else {}
    # A container without a status yet waits as ContainerCreating, or PodInitializing in
    # a pod with init containers, init containers included (convertToAPIContainerStatuses
    # in pkg/kubelet/kubelet_pods.go). A reason the agent knows (image pull, config) wins.
    not_started = seen.waiting or Waiting("PodInitializing" if init_specs else "ContainerCreating")
    init_statuses = [
        _container_status(c, init_seen.get(c["name"]), not_started, init=True) for c in init_specs
    ]
    initialized = all(_succeeded(init_seen.get(c["name"])) for c in init_specs)
    app_default = not_started if initialized else Waiting("PodInitializing")
    app_statuses = [
        _container_status(c, _created(app_seen.get(c["name"]), initialized), app_default)
        for c in spec.get("containers") or []
    ]
    previous = {c["type"]: c for c in old.get("conditions") or []}
    # The sandbox exists from the first run until the pod ends, when the kubelet tears it
    # down (PodReadyToStartContainers False on a finished pod).
    sandbox = run is not None and pod_phase not in TERMINAL_PHASES
    conditions = [_condition("PodReadyToStartContainers", sandbox, stamp, previous)]
    for kind, ok, reason, message in _conditions(
        pod_phase, run, init_statuses, app_statuses, _unready_gates(spec, previous)
    ):
        conditions.append(_condition(kind, ok, stamp, previous, reason=reason, message=message))
    conditions.append(
        previous.get("PodScheduled") or _condition("PodScheduled", True, stamp, previous)
    )
    # A merge patch replaces the whole list: write back the conditions of other writers.
    conditions += [c for t, c in previous.items() if t not in KUBELET_CONDITIONS]
    status: JSON = {
        "phase": pod_phase,
        "conditions": conditions,
        "hostIP": seen.node_ip,
        "hostIPs": [{"ip": seen.node_ip}] if seen.node_ip else [],
        "startTime": old.get("startTime") or rfc3339(seen.started or now),
        "initContainerStatuses": init_statuses,
        "containerStatuses": app_statuses,
        "qosClass": old.get("qosClass", "BestEffort"),
    }
    pod_ip = (run.pod_ip if run else None) or (seen.node_ip if spec.get("hostNetwork") else None)
    pod_ip = pod_ip or old.get("podIP")  # a kubelet never takes a pod's IP back
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if seen.failure is not None:
        status["reason"], status["message"] = seen.failure
    elif run is not None and run.reason:
        status["reason"] = run.reason
        if run.message:
            status["message"] = run.message
    return status


def same_status(written: JSON | None, computed: JSON) -> bool:
    """Whether writing ``computed`` would change nothing but heartbeat times."""
    return written is not None and _strip_times(written) == _strip_times(computed)


def _strip_times(status: JSON) -> JSON:
    conditions = [
        {k: v for k, v in c.items() if k not in ("lastTransitionTime", "lastProbeTime")}
        for c in status.get("conditions") or []
    ]
    return {**status, "conditions": conditions}
