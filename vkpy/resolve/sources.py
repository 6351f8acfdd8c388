"""What a pod refers to: its ConfigMaps, Secrets and service-account tokens, and
`fetch_sources`, which reads them from the API (async, thin)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

from vkpy.errors import KubeApiError, PodConfigError, VolumeSourceMissing
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube

TOKEN_SECONDS_DEFAULT = 3607


@dataclass(frozen=True)
class Sources:
    """What a pod refers to, fetched from the API: ConfigMaps, Secrets and tokens."""

    config_maps: dict[str, JSON] = field(default_factory=dict)
    secrets: dict[str, JSON] = field(default_factory=dict)
    tokens: dict[tuple[str, int], str] = field(default_factory=dict, repr=False)


# ---------------------------------------------------------------- what a pod refers to


def _volume_sources(volume: JSON) -> Iterable[tuple[str, str, bool]]:
    if "configMap" in volume:
        yield "configmap", volume["configMap"]["name"], bool(volume["configMap"].get("optional"))
    if "secret" in volume:
        yield "secret", volume["secret"]["secretName"], bool(volume["secret"].get("optional"))
    for source in (volume.get("projected") or {}).get("sources") or []:
        if "configMap" in source:
            yield (
                "configmap",
                source["configMap"]["name"],
                bool(source["configMap"].get("optional")),
            )
        if "secret" in source:
            yield "secret", source["secret"]["name"], bool(source["secret"].get("optional"))


def _env_sources(container: JSON) -> Iterable[tuple[str, str, bool]]:
    for item in container.get("envFrom") or []:
        if "configMapRef" in item:
            yield (
                "configmap",
                item["configMapRef"]["name"],
                bool(item["configMapRef"].get("optional")),
            )
        if "secretRef" in item:
            yield "secret", item["secretRef"]["name"], bool(item["secretRef"].get("optional"))
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            yield "configmap", ref["name"], bool(ref.get("optional"))
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            yield "secret", ref["name"], bool(ref.get("optional"))


def all_containers(pod: JSON) -> list[JSON]:
    """The pod's init containers, then its containers."""
    spec = pod.get("spec", {})
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def references(pod: JSON) -> set[tuple[str, str, bool]]:
    """(kind, name, optional) of every ConfigMap and Secret the pod uses."""
    refs: set[tuple[str, str, bool]] = set()
    for volume in pod.get("spec", {}).get("volumes") or []:
        refs.update(_volume_sources(volume))
    for container in all_containers(pod):
        refs.update(_env_sources(container))
    return refs


def token_key(token: JSON) -> tuple[str, int]:
    """(audience, expirationSeconds) of a projected serviceAccountToken source."""
    return token.get("audience", ""), int(token.get("expirationSeconds", TOKEN_SECONDS_DEFAULT))


def token_requests(pod: JSON) -> set[tuple[str, int]]:
    """(audience, expirationSeconds) of every projected service-account token."""
    wanted = set()
    for volume in pod.get("spec", {}).get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken")
            if token is not None:
                wanted.add(token_key(token))
    return wanted


def _missing(kind: str, name: str) -> str:
    return f'{"configmap" if kind == "configmap" else "secret"} "{name}" not found'


def _required_by_volumes(pod: JSON) -> dict[tuple[str, str], str]:
    """(kind, name) of each object a volume needs, to the first such volume's name."""
    needed: dict[tuple[str, str], str] = {}
    for volume in pod.get("spec", {}).get("volumes") or []:
        for kind, name, optional in _volume_sources(volume):
            if not optional:
                needed.setdefault((kind, name), volume["name"])
    return needed


async def fetch_sources(kube: Kube, pod: JSON) -> Sources:
    """Read what ``pod`` refers to. A missing required object raises PodConfigError, or
    VolumeSourceMissing when a volume needs it (volumes are mounted first)."""
    namespace = pod["metadata"]["namespace"]
    sources = Sources()
    by_volume = _required_by_volumes(pod)
    missing: list[tuple[str, str]] = []
    for kind, name, optional in sorted(references(pod)):
        plural = "configmaps" if kind == "configmap" else "secrets"
        try:
            obj = await kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            if not optional:
                missing.append((kind, name))
            continue
        (sources.config_maps if kind == "configmap" else sources.secrets)[name] = obj
    for kind, name in missing:
        if (kind, name) in by_volume:
            raise VolumeSourceMissing(
                f'MountVolume.SetUp failed for volume "{by_volume[kind, name]}" : '
                + _missing(kind, name)
            )
    if missing:
        raise PodConfigError(_missing(*missing[0]))
    account = pod["spec"].get("serviceAccountName") or "default"
    for audience, seconds in sorted(token_requests(pod)):
        request: JSON = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        }
        answer = await kube.create(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", request
        )
        sources.tokens[(audience, seconds)] = answer["status"]["token"]
    return sources


def object_data(obj: JSON, *, secret: bool) -> dict[str, bytes]:
    """The decoded data of a fetched ConfigMap (data and binaryData) or Secret."""
    if secret:
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    values = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    values.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return values
