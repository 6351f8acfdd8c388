"""The container events a kubelet records, derived from the statuses vkpy writes.

A kubelet records Pulled, Created and Started for every run of a container, BackOff
while it waits to restart one, and FailedCreatePodSandBox when the pod's sandbox cannot
be made. vkpy sees a run only through the statuses it writes, so each event is keyed by
the container and its run (its restart count), and recorded once: a run that started
and ended between two status reads still gets its three events, in the kubelet's order.
"""

from __future__ import annotations

from typing import Literal

from vkpy.backend import SANDBOX_FAILED
from vkpy.jsontypes import JSON

Event = tuple[Literal["Normal", "Warning"], str, str]


def _run_events(name: str, image: str, run: int) -> list[tuple[str, Event]]:
    present = f'Container image "{image}" already present on machine and can be accessed by the pod'
    return [
        (f"pulled/{name}/{run}", ("Normal", "Pulled", present)),
        (f"created/{name}/{run}", ("Normal", "Created", "Container created")),
        (f"started/{name}/{run}", ("Normal", "Started", "Container started")),
    ]


def container_events(statuses: list[JSON]) -> list[tuple[str, Event]]:
    """(key, event) for each event the kubelet would have recorded by now."""
    events: list[tuple[str, Event]] = []
    for container in statuses:
        name, state = container["name"], container["state"]
        restarts, image = container["restartCount"], container.get("image", "")
        if "terminated" in (container.get("lastState") or {}) and restarts > 0:
            events += _run_events(name, image, restarts - 1)  # the run that ended
        if "running" in state or "terminated" in state:
            events += _run_events(name, image, restarts)
        waiting = state.get("waiting") or {}
        if str(waiting.get("message", "")).startswith(SANDBOX_FAILED):
            key = f"sandbox/{waiting['message']}"
            events.append((key, ("Warning", "FailedCreatePodSandBox", str(waiting["message"]))))
        if waiting.get("reason") == "CrashLoopBackOff":
            message = f"Back-off restarting failed container {name}"
            events.append((f"backoff/{name}/{restarts}", ("Warning", "BackOff", message)))
    return events
