"""The virtual Node: its object, its status, and the loop that keeps the status true.

`node_object` and `node_status` are pure. `NodeReporter` registers the Node (create
on 404) and patches ``nodes/status`` on change and at least every
``node_status_seconds``, as a strategic-merge patch that keeps other writers'
conditions. Backend health (for Slurm and HTCondor an SSH round trip) is checked for
each of those writes and every ``node_health_seconds``, not more often: `poke` checks
it at once when the pod controller finds the backend unreachable (or reachable again),
and while it is unhealthy it is checked every few seconds, so Ready comes back soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from vkpy import __version__
from vkpy.backend import Capacity, Health
from vkpy.config import NodeConfig
from vkpy.errors import KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube
from vkpy.kube.times import rfc3339

logger = logging.getLogger(__name__)

PROVIDER_TAINT = "virtual-kubelet.io/provider"
KUBELET_VERSION = f"v1.36.0-vkpy-{__version__}"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}
SICK_HEALTH_SECONDS = 5.0  # health checks while the backend is unhealthy
_QUIET_CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("NetworkUnavailable", "RouteCreated", "the virtual node needs no route"),
)


@dataclass(frozen=True)
class NodeIdentity:
    name: str
    backend_kind: str
    address: str  # InternalIP: where the apiserver reaches the kubelet API
    port: int
    boot_id: str
    # status.declaredFeatures: ExtendWebSocketsToKubelet when the kubelet API serves
    # WebSocket exec, attach and port-forward itself.
    declared_features: tuple[str, ...] = ()


def labels(config: NodeConfig, backend_kind: str) -> dict[str, str]:
    return {
        "type": "virtual-kubelet",
        "kubernetes.io/role": "agent",
        "kubernetes.io/hostname": config.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
        "node.kubernetes.io/instance-type": f"vkpy-{backend_kind}",
        **config.labels,
    }


def taints(config: NodeConfig, backend_kind: str) -> list[JSON]:
    own = [{"key": PROVIDER_TAINT, "value": backend_kind, "effect": "NoSchedule"}]
    return (own if config.provider_taint else []) + [t.model_dump() for t in config.taints]


def capacity(config: NodeConfig, reported: Capacity | None) -> dict[str, str]:
    if reported is None:
        return dict(config.capacity)
    values = {
        **config.capacity,
        "cpu": f"{reported.cpu_millis}m",
        "memory": str(reported.memory_bytes),
        "pods": str(reported.pods),
    }
    if reported.gpus:
        values["nvidia.com/gpu"] = str(reported.gpus)
    return values


def node_status(
    identity: NodeIdentity,
    health: Health,
    resources: dict[str, str],
    previous: dict[str, JSON],
    now: datetime,
) -> JSON:
    """Status with the five conditions; a sick backend is NotReady and offers no pods."""
    stamp = rfc3339(now)

    def condition(kind: str, ok_status: str, reason: str, message: str) -> JSON:
        before = previous.get(kind)
        since = (
            before.get("lastTransitionTime")
            if before and before.get("status") == ok_status
            else stamp
        )
        return {
            "type": kind,
            "status": ok_status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": since,
        }

    ready = condition(
        "Ready",
        "True" if health.ok else "False",
        "KubeletReady" if health.ok else "KubeletNotReady",
        "vkpy is posting ready status" if health.ok else f"backend unavailable: {health.message}",
    )
    allocatable = dict(resources) if health.ok else {**resources, "pods": "0"}
    status: JSON = {
        "capacity": resources,
        "allocatable": allocatable,
        "conditions": [ready] + [condition(k, "False", r, m) for k, r, m in _QUIET_CONDITIONS],
        "addresses": [{"type": "InternalIP", "address": identity.address}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": identity.port}},
        "nodeInfo": {
            "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, identity.name).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, identity.name)),
            "bootID": identity.boot_id,
            "kernelVersion": platform.release(),
            "osImage": f"vkpy {__version__} ({identity.backend_kind})",
            "containerRuntimeVersion": f"{identity.backend_kind}://vkpy-{__version__}",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": _ARCH.get(platform.machine(), platform.machine()),
        },
    }
    # Always named, so a status patch also takes back what an earlier agent declared.
    status["declaredFeatures"] = sorted(identity.declared_features) or None
    return status


def node_object(config: NodeConfig, identity: NodeIdentity, status: JSON) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": identity.name, "labels": labels(config, identity.backend_kind)},
        "spec": {"taints": taints(config, identity.backend_kind)},
        "status": status,
    }


def merged_taints(current: list[JSON], wanted: list[JSON]) -> list[JSON]:
    """Ours added or updated by key and effect; taints others own (unreachable...) kept.
    The provider taint is always ours: gone from ``current`` once it is turned off."""
    ours = {(t["key"], t["effect"]) for t in wanted}
    kept = [t for t in current if (t["key"], t.get("effect")) not in ours]
    return [t for t in kept if t["key"] != PROVIDER_TAINT] + wanted


def _significant(status: JSON) -> JSON:
    """The status minus heartbeat times: what makes a write necessary."""
    conditions = [
        {k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in status["conditions"]
    ]
    return {**status, "conditions": conditions}


class NodeReporter:
    """Registers the Node and keeps its status true."""

    def __init__(
        self,
        kube: Kube,
        config: NodeConfig,
        identity: NodeIdentity,
        *,
        health: Callable[[], Awaitable[Health]],
        resources: Callable[[], Awaitable[dict[str, str]]],
        interval: float,
        health_interval: float = 60.0,
    ) -> None:
        self.kube = kube
        self.config = config
        self.identity = identity
        self._check_health = health
        self._resources = resources
        self.interval = interval
        self.health_interval = health_interval
        self.node: JSON | None = None
        self._written: JSON | None = None
        self._health: Health | None = None  # as last checked
        self._changed = asyncio.Event()

    @property
    def path(self) -> str:
        return f"/api/v1/nodes/{self.identity.name}"

    @property
    def allocatable(self) -> dict[str, str]:
        """What the node offered in the status last written."""
        return dict((self._written or {}).get("allocatable") or {})

    def poke(self) -> None:
        """Check backend health and write the status now: it may have changed."""
        self._changed.set()

    @property
    def health(self) -> Health | None:
        """The backend's health as last checked; None before the first check."""
        return self._health

    @property
    def health_every(self) -> float:
        """Seconds between health checks: short while the backend is unhealthy."""
        if self._health is None or self._health.ok:
            return self.health_interval
        return min(self.health_interval, SICK_HEALTH_SECONDS)

    async def _status(self, *, check_health: bool) -> JSON:
        previous = {c["type"]: c for c in (self._written or {}).get("conditions", [])}
        if check_health or self._health is None:
            self._health = await self._check_health()
        return node_status(
            self.identity, self._health, await self._resources(), previous, datetime.now(UTC)
        )

    async def register(self) -> JSON:
        """Create the Node, or bring an existing one's labels, taints and status up to date."""
        status = await self._status(check_health=True)
        try:
            current = await self.kube.get(self.path)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            self.node = await self.kube.create(
                "/api/v1/nodes", node_object(self.config, self.identity, status)
            )
            logger.info("registered node %s", self.identity.name)
        else:
            patch = {
                "metadata": {"labels": labels(self.config, self.identity.backend_kind)},
                "spec": {
                    "taints": merged_taints(
                        (current.get("spec") or {}).get("taints") or [],
                        taints(self.config, self.identity.backend_kind),
                    )
                },
            }
            await self.kube.strategic_patch(self.path, patch)
            self.node = await self.kube.strategic_patch(f"{self.path}/status", {"status": status})
            logger.info("node %s exists; labels, taints and status updated", self.identity.name)
        self._written = status
        return self.node

    async def write_status(self, *, force: bool, check_health: bool = True) -> None:
        status = await self._status(check_health=check_health)
        if not force and self._written and _significant(status) == _significant(self._written):
            return
        try:
            self.node = await self.kube.strategic_patch(f"{self.path}/status", {"status": status})
        except KubeApiError as exc:
            if exc.status == 404:  # deleted under us: register again
                await self.register()
                return
            raise
        self._written = status

    async def run(self) -> None:
        """Write on change and at least every interval; check health for every such
        write, every health interval, and at once when poked."""
        loop = asyncio.get_running_loop()
        last_full = last_health = loop.time()
        while True:
            due_at = min(last_full + self.interval, last_health + self.health_every)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(due_at - loop.time(), 0))
            poked, now = self._changed.is_set(), loop.time()
            self._changed.clear()
            due = now - last_full >= self.interval
            check_health = poked or due or now - last_health >= self.health_every
            try:
                await self.write_status(force=due, check_health=check_health)
                if due:
                    last_full = now
            except KubeApiError as exc:
                logger.warning("node status write failed: %s", exc)
            if check_health:
                last_health = now
