"""``vkpy operator``: kopf serves VirtualNodes; each one's agent runs in this loop.

kopf logs in with the credentials vkpy's own client loaded (kubeconfig, or the
service account), so both speak to the cluster as the same identity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from kubernetes_asyncio.client import Configuration

from vkpy.kube.client import Kube, connect
from vkpy.metrics import count_kube_request
from vkpy.operator.election import Election, serve_while_leading
from vkpy.operator.fleet import BackendFactory, Fleet
from vkpy.operator.handlers import Handlers, configure
from vkpy.operator.health import serve_health
from vkpy.operator.ports import PortPool
from vkpy.operator.translate import Defaults
from vkpy.wiring import build_backend

logger = logging.getLogger(__name__)

# Every node holds a pod watch open, and its leases, status and events need a few more.
MAX_CONNECTIONS = 2048


@dataclass(frozen=True)
class Options:
    kubeconfig: Path | None
    defaults: Defaults
    kubelet_ports: range
    namespaces: tuple[str, ...] = ()  # none: every namespace
    status_seconds: float = 5.0
    election: Election | None = None  # replicas: only the Lease's holder serves
    liveness: str | None = None  # kopf's, while serving: e.g. http://0.0.0.0:8080/healthz
    health_port: int = 0  # /healthz of the process, leading or standing by; 0: off
    build: BackendFactory = field(default=build_backend)  # benchmarks: an instant backend


async def connection_info(configuration: Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from kubernetes_asyncio's (a token re-read when rotated)."""
    bearer = str(await configuration.get_api_key_with_prefix("BearerToken") or "")
    scheme, _, token = bearer.partition(" ")
    return kopf.ConnectionInfo(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert or None,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file or None,
        private_key_path=configuration.key_file or None,
    )


def build_registry(kube: Kube, fleet: Fleet, options: Options) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    Handlers(kube, fleet, options.defaults, options.build).register(
        registry, status_seconds=options.status_seconds
    )

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await connection_info(kube.api.configuration)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, state_dir=options.defaults.state_dir)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await fleet.close()  # pods keep running for the next start to adopt

    return registry


async def run(options: Options) -> None:
    # kopf reports every timer run at INFO; vkpy's handlers log what happens.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    api = await connect(options.kubeconfig, pool_size=MAX_CONNECTIONS)
    kube = Kube(api, on_request=count_kube_request)
    fleet = Fleet(kube, PortPool(options.kubelet_ports), options.build)

    async def serve() -> None:
        try:
            await kopf.operator(
                registry=build_registry(kube, fleet, options),
                clusterwide=not options.namespaces,
                namespaces=options.namespaces,
                standalone=True,  # one replica serves: the election's Lease says which
                liveness_endpoint=options.liveness,
            )
        finally:
            await fleet.close()

    health = await serve_health(options.health_port) if options.health_port else None
    try:
        if options.election is None:
            await serve()
        else:
            await serve_while_leading(kube, options.election, serve)
    finally:
        if health is not None:
            await health.cleanup()
        await kube.close()
