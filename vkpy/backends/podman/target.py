"""Which Podman container a stream is for: a pod UID and container name, checked
against what Podman holds (`observed`). Pure functions."""

from __future__ import annotations

from collections.abc import Mapping

from vkpy.backends.podman.observed import Instance, PodState
from vkpy.errors import ContainerNotRunning, PodNotFound, PortUnreachable


def pod(pods: Mapping[str, PodState], uid: str) -> PodState:
    found = pods.get(uid)
    if found is None:
        raise PodNotFound(f"no pod with uid {uid} in Podman")
    return found


def running(pods: Mapping[str, PodState], uid: str, container: str) -> Instance:
    """The instance of ``container`` running now (its latest one)."""
    held = pod(pods, uid)
    history = held.history(container)
    if history is None:
        raise PodNotFound(f"pod {held.namespace}/{held.name} has no container {container!r}")
    current = history.current
    if not current.running:
        raise ContainerNotRunning(
            f"container {container} of pod {held.namespace}/{held.name} is not running "
            f"(Podman state {current.state})"
        )
    return current


def sandbox(pods: Mapping[str, PodState], uid: str) -> Instance:
    """The pod's infra container, which holds its network namespace."""
    held = pod(pods, uid)
    if held.infra is None or not held.infra.running:
        raise PortUnreachable(
            f"pod {held.namespace}/{held.name} has no running sandbox: nothing answers on its ports"
        )
    return held.infra
