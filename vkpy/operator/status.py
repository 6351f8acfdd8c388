"""A VirtualNode's status from what its agent shows (pure).

Conditions keep their lastTransitionTime while their status stays; `changes` gives
only the fields that differ, so an idle node costs no writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vkpy.backend import Health


@dataclass(frozen=True)
class View:
    """What the operator knows of one VirtualNode's agent."""

    generation: int | None
    node_name: str = ""
    port: int | None = None
    problem: tuple[str, str] | None = None  # (reason, message): why it does not run
    running: bool = False
    node_uid: str = ""
    health: Health | None = None
    phases: Mapping[str, int] = field(default_factory=dict)
    backend_error: str = ""


def _condition(
    kind: str, status: str, reason: str, message: str, *, now: str, before: Mapping[str, Any]
) -> dict[str, Any]:
    same = before.get("status") == status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": before.get("lastTransitionTime", now) if same else now,
    }


def _ready(view: View) -> tuple[str, str, str]:
    if view.problem is not None:
        return ("False", *view.problem)
    if not view.running or not view.node_uid:
        return ("False", "Starting", "the agent is registering the node")
    if view.health is not None and not view.health.ok:
        return ("False", "BackendUnhealthy", view.health.message)
    return ("True", "AgentRunning", f"node {view.node_name} is served")


def _backend(view: View) -> tuple[str, str, str]:
    if view.health is None:
        return ("Unknown", "NotChecked", "the backend has not been checked yet")
    if view.health.ok:
        return ("True", "BackendReachable", view.health.message)
    return ("False", "BackendUnreachable", view.health.message)


def status(view: View, previous: Mapping[str, Any], *, now: str) -> dict[str, Any]:
    before = {c.get("type"): c for c in previous.get("conditions") or []}
    conditions = [
        _condition(kind, *values, now=now, before=before.get(kind, {}))
        for kind, values in (("Ready", _ready(view)), ("BackendHealthy", _backend(view)))
    ]
    result: dict[str, Any] = {
        "conditions": conditions,
        "nodeName": view.node_name,
        "pods": dict(view.phases),
        "podCount": sum(view.phases.values()),
        "lastBackendError": view.backend_error or previous.get("lastBackendError", ""),
        "observedGeneration": view.generation,
    }
    if view.port is not None:
        result["kubeletPort"] = view.port
    if view.node_uid:
        result["nodeUID"] = view.node_uid
    return result


def changes(new: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``new`` that differ from ``previous``; a status merge patch."""
    patch = {k: v for k, v in new.items() if previous.get(k) != v}
    if "pods" in patch:  # a merge patch merges maps: phases gone must be nulled
        patch["pods"] = {**dict.fromkeys(previous.get("pods") or {}), **new["pods"]}
    return patch
