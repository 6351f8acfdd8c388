"""The node agent: wires the node, its lease, the pod controller and the backend together.

A root supervisor runs every loop as a guarded task; when one ends by failure the
others are stopped and the agent exits non-zero. SIGTERM and Ctrl-C stop renewing
the lease and leave pods and jobs running in the backend for the next start to adopt.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from vkpy.aio import supervise
from vkpy.backend import Backend, Health, LogReader, Paced, PodNotifier
from vkpy.config import Settings, state_directory
from vkpy.errors import BackendError, ConfigError
from vkpy.events import EventRecorder
from vkpy.kube.client import Kube
from vkpy.kubeletapi import KubeletApiServer, WebhookAuth, serving_certificate
from vkpy.kubeletapi.streaming.handlers import StreamingRoutes
from vkpy.lease import LeaseKeeper
from vkpy.node import NodeIdentity, NodeReporter, capacity
from vkpy.pods import PodController
from vkpy.remote import Attacher, Executor, PortForwarder

logger = logging.getLogger(__name__)

# The backend's capacity (for Slurm, sinfo: two slurmctld RPCs) is read again this often;
# a partition's nodes change seldom.
CAPACITY_TTL = 300.0


def advertised_address(settings: Settings) -> str:
    if settings.node.advertise_address:
        return settings.node.advertise_address
    address = settings.kubelet_api.address
    return "127.0.0.1" if address in ("0.0.0.0", "::", "") else address  # noqa: S104


def client_ca(settings: Settings, kube: Kube) -> bytes | None:
    """The CA that signs the apiserver's kubelet client certificate: configured, else the
    cluster CA the agent itself trusts."""
    path = settings.kubelet_api.client_ca_file or kube.ca_file
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"kubelet_api.client_ca_file: cannot read {path}: {exc.strerror}"
        ) from exc


def poll_seconds(settings: Settings, backend: Backend) -> float:
    """How often the pod controller reads the backend's records: a backend that pushes
    changes only as a safety net; one that sets its own pace (the batch backends' fast
    clock) at that pace."""
    if isinstance(backend, PodNotifier):
        return settings.pod_resync_seconds
    if isinstance(backend, Paced):
        return backend.poll_seconds
    return settings.status_poll_seconds


def declared_features(settings: Settings, backend: Backend) -> tuple[str, ...]:
    """What the Node declares: WebSocket streaming only when this kubelet API serves it,
    since an apiserver then sends kubectl's WebSockets here for every pod."""
    if settings.kubelet_api.websocket_streaming and isinstance(backend, Executor):
        return ("ExtendWebSocketsToKubelet",)
    return ()


class Agent:
    def __init__(self, settings: Settings, kube: Kube, backend: Backend) -> None:
        self.settings = settings
        self.kube = kube
        self.backend = backend
        self.identity = NodeIdentity(
            name=settings.node.name,
            backend_kind=backend.kind,
            address=advertised_address(settings),
            port=settings.kubelet_api.port,
            boot_id=str(uuid.uuid4()),
            declared_features=declared_features(settings, backend),
        )
        self.events = EventRecorder(kube, settings.node.name)
        self.pods = PodController(
            kube,
            backend,
            self.events,
            node_name=settings.node.name,
            node_ip=self.identity.address,
            poll_seconds=poll_seconds(settings, backend),
            resync_seconds=settings.pod_resync_seconds,
            allocatable=self._allocatable,
            backend_seen=self._backend_seen,
        )
        self.reporter: NodeReporter = NodeReporter(
            kube,
            settings.node,
            self.identity,
            health=self._health,
            resources=self._resources,
            interval=settings.node_status_seconds,
            health_interval=settings.node_health_seconds,
        )
        self.certificate = serving_certificate(
            settings.kubelet_api,
            kube=kube,
            node_name=settings.node.name,
            ip_addresses=[self.identity.address],
            state_dir=state_directory(settings),
            client_ca=client_ca(settings, kube),
        )
        self.server = KubeletApiServer(
            node_name=settings.node.name,
            config=settings.kubelet_api,
            tls=self.certificate,
            auth=WebhookAuth(kube, node_name=settings.node.name),
            find_pod=self.pods.find,
            list_pods=self.pods.pods,
            logs=backend if isinstance(backend, LogReader) else None,
            ready=lambda: self.reporter.health is None or self.reporter.health.ok,
            streaming=StreamingRoutes(
                config=settings.kubelet_api,
                find_pod=self.pods.find,
                executor=backend if isinstance(backend, Executor) else None,
                attacher=backend if isinstance(backend, Attacher) else None,
                forwarder=backend if isinstance(backend, PortForwarder) else None,
                backend_kind=backend.kind,
            ),
        )
        self._capacity: tuple[float, dict[str, str]] | None = None
        self.stopping = asyncio.Event()

    def _allocatable(self) -> dict[str, str]:
        return self.reporter.allocatable

    def _backend_seen(self, ok: bool) -> None:
        """A backend call got through, or found the backend unreachable: when that
        disagrees with the health last seen, the node checks it again now."""
        seen = self.reporter.health
        if seen is not None and seen.ok != ok:
            self.reporter.poke()

    async def _health(self) -> Health:
        try:
            health = await self.backend.health()
        except BackendError as exc:
            health = Health(False, str(exc))
        seen = self.reporter.health  # the check before this one
        if seen is not None and health.ok != seen.ok:
            logger.warning(
                "backend %s: %s", "healthy" if health.ok else "unhealthy", health.message or "ok"
            )
        return health

    async def _resources(self) -> dict[str, str]:
        now = time.monotonic()
        if self._capacity is None or now - self._capacity[0] > CAPACITY_TTL:
            try:
                reported = await self.backend.capacity()
            except BackendError as exc:
                logger.warning("backend capacity unavailable: %s", exc)
                reported = None
            self._capacity = (now, capacity(self.settings.node, reported))
        return self._capacity[1]

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.backend.start()
        try:
            await self.server.start()
            if self.server.port is not None and self.server.port != self.identity.port:
                # Port 0 in the config: advertise the port the system picked.
                self.identity = replace(self.identity, port=self.server.port)
                self.reporter.identity = self.identity
            await self._serve()
        finally:
            await self.server.close()
            await self.pods.close()
            await self.events.flush()
            await self.backend.close()
            logger.info("stopped; pods keep running in %s for the next start", self.backend.kind)

    async def _serve(self) -> None:
        node = await self.reporter.register()
        lease = LeaseKeeper(
            self.kube,
            self.identity.name,
            node["metadata"]["uid"],
            duration=self.settings.lease_duration_seconds,
            renew_seconds=self.settings.lease_renew_seconds,
        )
        await lease.renew()
        if isinstance(self.backend, PodNotifier):
            self.backend.on_change(self.pods.backend_changed)
        loops: dict[str, Coroutine[Any, Any, None]] = {
            "lease": lease.run(),
            "serving-certificate": self.certificate.run(),
            "node-status": self.reporter.run(),
            "pods": self.pods.run(),
            "events": self.events.run(),
        }
        logger.info(
            "node %s ready: backend %s, kubelet API at %s:%d",
            self.identity.name,
            self.backend.kind,
            self.identity.address,
            self.identity.port,
        )
        await supervise(loops, self.stopping, log=logger)


def install_signal_handlers(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
