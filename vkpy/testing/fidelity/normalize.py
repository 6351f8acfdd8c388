"""A pod and its events, reduced to what two kubelets must agree on.

Times, IPs, container and image IDs, node and namespace names are dropped or reduced
to whether they are set. A restarting container's state and its exact restart count
depend on the instant it is looked at (waiting in CrashLoopBackOff, running, or just
terminated), so for such cases only its last termination and "restarted" are kept.
"""

from __future__ import annotations

from typing import Any

Flat = dict[str, Any]
CONDITIONS = (
    "PodScheduled",
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
)
# A kubelet alternates between these two while a pull keeps failing.
PULL_FAILURE = "ErrImagePull/ImagePullBackOff"


def _reason(reason: str | None) -> str | None:
    return PULL_FAILURE if reason in ("ErrImagePull", "ImagePullBackOff") else reason


def _state(state: dict[str, Any] | None) -> Flat:
    if not state:
        return {"kind": None}
    kind, detail = next(iter(state.items()))
    flat: Flat = {"kind": kind}
    if kind in ("waiting", "terminated"):
        flat["reason"] = _reason(detail.get("reason"))
    if kind == "terminated":
        flat["exitCode"] = detail.get("exitCode")
        flat["message"] = (detail.get("message") or "").strip() or None
    return flat


def _container(status: dict[str, Any], *, restarting: bool) -> Flat:
    flat: Flat = {}
    last = _state(status.get("lastState"))
    last.pop("message", None)
    if restarting:
        flat["restarted"] = status.get("restartCount", 0) >= 1
        flat["lastState"] = last
    else:
        flat.update({f"state.{k}": v for k, v in _state(status.get("state")).items()})
        flat["restartCount"] = status.get("restartCount", 0)
        flat["lastState"] = last
        flat["ready"] = status.get("ready")
    flat["containerID"] = bool(status.get("containerID"))
    flat["imageID"] = bool(status.get("imageID"))
    return flat


def _conditions(status: dict[str, Any]) -> Flat:
    found = {c["type"]: c for c in status.get("conditions") or []}
    flat: Flat = {}
    for kind in CONDITIONS:
        condition = found.get(kind)
        flat[kind] = (
            None
            if condition is None
            else f"{condition['status']} {condition.get('reason') or ''}".strip()
        )
    return flat


def _registration_race(event: dict[str, Any]) -> bool:
    """A kubelet's FailedMount for an object its watch has not registered yet: a known
    race of the kubelet (kubernetes/kubernetes#105204), gone on its next mount pass,
    not behaviour the pod spec asks for."""
    return event.get("reason") == "FailedMount" and "not registered" in (event.get("message") or "")


def event_reasons(events: list[dict[str, Any]]) -> list[str]:
    """The distinct "Type Reason" pairs of the node's own events (not the scheduler's)."""
    pairs = set()
    for event in events:
        source = (event.get("source") or {}).get("component") or event.get("reportingComponent")
        if source == "default-scheduler" or event.get("reason") == "Scheduled":
            continue
        if _registration_race(event):
            continue
        pairs.add(f"{event.get('type')} {event.get('reason')}")
    return sorted(pairs)


def normalize(
    pod: dict[str, Any] | None, events: list[dict[str, Any]], *, restarting: bool = False
) -> Flat:
    """The comparable view: dotted field paths to values."""
    if pod is None:
        return {"pod": None, "events": event_reasons(events)}
    status = pod.get("status") or {}
    flat: Flat = {
        "phase": status.get("phase"),
        "reason": status.get("reason"),
        "podIP": bool(status.get("podIP")),
        "hostIP": bool(status.get("hostIP")),
        "startTime": bool(status.get("startTime")),
    }
    flat.update({f"conditions.{k}": v for k, v in _conditions(status).items()})
    for group in ("initContainerStatuses", "containerStatuses"):
        prefix = "initContainers" if group.startswith("init") else "containers"
        for container in status.get(group) or []:
            for key, value in _container(container, restarting=restarting).items():
                flat[f"{prefix}.{container['name']}.{key}"] = value
    flat["events"] = event_reasons(events)
    return flat


def summary(flat: Flat) -> str:
    """One line for the report: phase and each container's state."""
    if flat.get("pod", True) is None:
        return "deleted"
    parts = [str(flat.get("phase")) + (f"/{flat['reason']}" if flat.get("reason") else "")]
    names = sorted(
        {k.split(".")[1] for k in flat if k.startswith(("containers.", "initContainers."))}
    )
    for name in names:
        for prefix in ("initContainers", "containers"):
            kind = flat.get(f"{prefix}.{name}.state.kind")
            if kind is None and f"{prefix}.{name}.restarted" not in flat:
                continue
            if kind is None:
                parts.append(f"{name}: restarted")
                continue
            detail = " ".join(
                str(flat[f"{prefix}.{name}.state.{k}"])
                for k in ("reason", "exitCode")
                if flat.get(f"{prefix}.{name}.state.{k}") is not None
            )
            parts.append(f"{name}: {kind} {detail}".strip())
    return "; ".join(parts)


def differences(real: Flat, candidate: Flat) -> list[str]:
    """Field paths whose values differ; for events, each pair one side lacks."""
    fields = []
    for key in sorted(set(real) | set(candidate)):
        if key == "events":
            continue
        if real.get(key) != candidate.get(key):
            fields.append(key)
    ours, theirs = set(candidate.get("events", [])), set(real.get("events", []))
    fields += [f"events[{pair}]" for pair in sorted(ours ^ theirs)]
    return fields
