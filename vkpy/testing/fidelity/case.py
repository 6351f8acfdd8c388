"""One corpus case: a pod spec, how to know it has settled, and what is done to it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

IMAGE = "localhost/busybox:latest"


class Settle(enum.Enum):
    """When a case's pod has said all it will say."""

    TERMINAL = "phase Succeeded or Failed"
    WAITING = "a container waits with one of the case's reasons"
    RESTARTED = "a container has restarted at least once"
    RUNNING_AFTER_RESTART = "a container runs again after one restart"
    HELD = "still Pending after the case's hold time"
    GONE = "deleted from the API after the case's action"


class Action(enum.Enum):
    DELETE = "delete once running, with the pod's grace period"
    FORCE_DELETE = "delete once running, grace period 0"
    DELETE_PENDING = "delete while Pending"


@dataclass(frozen=True)
class Case:
    name: str
    containers: list[dict[str, Any]]
    settle: Settle = Settle.TERMINAL
    restart: str = "Never"
    init: list[dict[str, Any]] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()  # Settle.WAITING
    action: Action | None = None
    # Container states of a restarting container depend on the instant: compared without.
    restarting: bool = False


def container(name: str, script: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        **fields,
    }


def pod_manifest(
    case: Case, *, node_selector: dict[str, str], tolerations: list[Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": case.name, "labels": {"vkpy.io/fidelity": "corpus"}},
        "spec": {
            "nodeSelector": node_selector,
            "tolerations": tolerations,
            "restartPolicy": case.restart,
            "terminationGracePeriodSeconds": 3,
            "initContainers": case.init,
            "containers": case.containers,
            **case.spec,
        },
    }
