"""The differences from a real kubelet that are known, each with its reason.

A case listed here may differ in the fields named, and in no other; a listed field
that matches in a run is reported as matching, never as a failure, so a field that
depends on timing cannot fail a test run. Each reason is one of ``CLASSES``, which the
README's table counts.
"""

from __future__ import annotations

from vkpy.testing.fidelity.case import Settle
from vkpy.testing.fidelity.corpus import CASES

CLASSES: dict[str, str] = {
    "sandbox-after-config": (
        "vkpy resolves ConfigMaps, Secrets and images before it starts the pod's sandbox; a "
        "kubelet starts the sandbox first, so while they are missing it shows a pod IP, "
        "PodReadyToStartContainers True and a Pulled event, and vkpy does not"
    ),
    "pull-events": "for a failing image pull vkpy records Failed only, not Pulling and BackOff",
    "termination-message": (
        "the Podman backend reads neither terminationMessagePath nor, with "
        "FallbackToLogsOnError, the log's tail"
    ),
    "oom-cgroup-v1": (
        "Podman on these cgroup-v1 hosts does not report an OOM kill: exit 137 with reason "
        "Error, where containerd says OOMKilled"
    ),
    "deadline-final": (
        "on activeDeadlineSeconds vkpy stops the pod without writing its containers' final "
        "states, nor the DeadlineExceeded and Killing events"
    ),
    "graceful-final": (
        "on a graceful delete vkpy writes its containers as killed (137, phase Failed) instead "
        "of reading how they ended (here: exit 0 on SIGTERM, phase Succeeded)"
    ),
    "force-delete": (
        "a force-deleted pod leaves the API before vkpy sees it deleting, so vkpy records no "
        "Killing event"
    ),
    "pending-delete": (
        "a pod deleted while Pending keeps its waiting reason in vkpy's final status; a kubelet "
        "writes terminated ContainerStatusUnknown (137)"
    ),
    "first-backoff": (
        "vkpy records BackOff before a container's first restart; the kubelet's first restart "
        "here came without one"
    ),
    "ip-after-exit": (
        "a pod whose containers all end before vkpy's first status read may show no pod IP: "
        "the Podman pod's network is gone by then, and vkpy reads the IP from it"
    ),
    "timing": (
        "depends on the instant: a back-off may or may not have begun, or an event may come "
        "before or after the pod is gone"
    ),
}

_SANDBOX = {
    "conditions.PodReadyToStartContainers": "sandbox-after-config",
    "podIP": "sandbox-after-config",
    "events[Normal Pulled]": "sandbox-after-config",
}
_PULL = {
    "conditions.PodReadyToStartContainers": "sandbox-after-config",
    "podIP": "sandbox-after-config",
    "events[Normal Pulling]": "pull-events",
    "events[Normal BackOff]": "pull-events",
}
_RESTARTING = {"events[Warning BackOff]": "timing"}
_STATE = ("state.kind", "state.reason", "state.exitCode", "state.message")

_LISTED: dict[str, dict[str, str]] = {
    "termination-message-file": {"containers.main.state.message": "termination-message"},
    "termination-fallback-logs": {"containers.main.state.message": "termination-message"},
    "oom": {"containers.main.state.reason": "oom-cgroup-v1"},
    "restart-once": {"events[Warning BackOff]": "first-backoff"},
    "always-exit-0": _RESTARTING,
    "always-exit-1": _RESTARTING,
    "onfailure-exit-1": _RESTARTING,
    "init-fail-onfailure": _RESTARTING,
    "deadline": {
        **{f"containers.main.{field}": "deadline-final" for field in _STATE},
        "containers.main.containerID": "deadline-final",
        "containers.main.imageID": "deadline-final",
        "podIP": "deadline-final",
        "conditions.PodReadyToStartContainers": "deadline-final",
        **{
            f"events[Normal {reason}]": "deadline-final"
            for reason in ("Pulled", "Created", "Started", "Killing", "DeadlineExceeded")
        },
    },
    "env-configmap-missing": _SANDBOX,
    "envfrom-configmap-missing": _SANDBOX,
    "env-secret-missing": _SANDBOX,
    "envfrom-secret-missing": _SANDBOX,
    "image-missing-always": _PULL,
    "image-missing-ifnotpresent": _PULL,
    "image-missing-never": _SANDBOX,
    "delete-graceful": {
        **{f"containers.main.{field}": "graceful-final" for field in _STATE},
        "phase": "graceful-final",
        "conditions.Initialized": "graceful-final",
        "conditions.Ready": "graceful-final",
        "conditions.ContainersReady": "graceful-final",
        "events[Warning FailedMount]": "timing",
    },
    # What the kubelet records after a forced delete races with the pod's removal.
    "delete-forced": {
        "events[Normal Killing]": "force-delete",
        "events[Warning FailedMount]": "timing",
    },
    "delete-pending": {
        **_SANDBOX,
        **{f"containers.main.{field}": "pending-delete" for field in _STATE},
    },
}


def _with_quick_exits(listed: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Every case whose pod ends by itself may also lack its pod IP ("ip-after-exit")."""
    known = {case: dict(fields) for case, fields in listed.items()}
    for case in CASES:
        if case.settle is Settle.TERMINAL:
            known.setdefault(case.name, {}).setdefault("podIP", "ip-after-exit")
    return known


KNOWN_DIFFERENCES = _with_quick_exits(_LISTED)
