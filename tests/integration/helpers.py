"""Shared helpers for integration tests: pods aimed at a virtual node, and waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from vkpy.kube.client import Kube

JSON = dict[str, Any]


def pod_for(
    node: str,
    name: str,
    containers: list[JSON],
    *,
    kind: str = "instant",
    restart: str = "Never",
    **spec: Any,
) -> JSON:
    """A pod that only the virtual node ``node`` accepts: nodeSelector + toleration.
    Images are used as they are here (no registry to pull `:latest` from)."""
    containers = [{"imagePullPolicy": "IfNotPresent", **c} for c in containers]
    for init in spec.get("initContainers", []):
        init.setdefault("imagePullPolicy", "IfNotPresent")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node, "type": "virtual-kubelet"},
            "tolerations": [
                {
                    "key": "virtual-kubelet.io/provider",
                    "operator": "Equal",
                    "value": kind,
                    "effect": "NoSchedule",
                }
            ],
            "restartPolicy": restart,
            "containers": containers,
            "terminationGracePeriodSeconds": 5,
            **spec,
        },
    }


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, what: str = "condition"
) -> Any:
    """Call ``probe`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


async def pod_phase(kube: Kube, namespace: str, name: str) -> str | None:
    pod = await kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    return (pod.get("status") or {}).get("phase")


async def events_for(kube: Kube, namespace: str, name: str) -> list[JSON]:
    listing = await kube.get(
        f"/api/v1/namespaces/{namespace}/events", fieldSelector=f"involvedObject.name={name}"
    )
    return list(listing.get("items") or [])
