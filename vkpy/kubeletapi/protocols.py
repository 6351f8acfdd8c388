"""What the kubelet API package is given by the agent: small callables and protocols.

The package never reaches into the agent: it calls the Kubernetes API through a
`KubeRequests` (the agent passes its `vkpy.kube.client.Kube`), asks about pods
through two callables, and serves TLS from a `TlsProvider`.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from vkpy.jsontypes import JSON

# (namespace, name) -> the pod as the API returned it, if it is bound to this node.
PodLookup = Callable[[str, str], Mapping[str, Any] | None]
# All pods bound to this node, as the API returned them.
PodLister = Callable[[], Iterable[Mapping[str, Any]]]


def container_names(pod: Mapping[str, Any]) -> set[str]:
    """Every container a pod from `PodLookup` names: app, init and ephemeral."""
    spec = pod.get("spec") or {}
    kinds = ("containers", "initContainers", "ephemeralContainers")
    return {c.get("name", "") for kind in kinds for c in spec.get(kind) or ()}


class KubeRequests(Protocol):
    """One request to the Kubernetes API, JSON in and out.

    Non-2xx answers and transport failures raise `vkpy.errors.KubeApiError` (with
    ``status`` set when the API answered). `vkpy.kube.client.Kube` is one.
    """

    async def request(self, method: str, path: str, *, body: Any = None) -> JSON: ...


class TlsProvider(Protocol):
    """The server's TLS: one listening context that picks the current certificate."""

    def listening_context(self) -> ssl.SSLContext:
        """The context the HTTPS listener is created with. Every new connection gets the
        certificate that is current when it arrives, so a renewed certificate is
        served without restarting the listener."""
        ...
