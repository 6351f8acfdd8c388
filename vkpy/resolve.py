"""From an API pod to a backend `PodSpec`: what the kubelet resolves before it runs one.

`fetch_sources` reads the ConfigMaps and Secrets a pod refers to and requests its
service-account tokens (async, thin); `pod_spec` is a pure translation from the pod
dict plus those sources. Features the node cannot provide raise
`UnsupportedPodFeature`, naming the feature; a missing ConfigMap or Secret raises
`PodConfigError` (the kubelet's CreateContainerConfigError, retried).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from vkpy.backend import POD_IP, Container, EnvVar, File, Mount, PodSpec, Resources, Volume
from vkpy.errors import KubeApiError, PodConfigError, UnsupportedPodFeature
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube
from vkpy.quantity import parse_quantity

TOKEN_SECONDS_DEFAULT = 3607
SUPPORTED_VOLUMES = ("emptyDir", "configMap", "secret", "downwardAPI", "projected", "hostPath")
_UNSUPPORTED_POD_FIELDS = {
    "hostPID": "hostPID",
    "hostIPC": "hostIPC",
    "ephemeralContainers": "ephemeral containers",
    "resourceClaims": "dynamic resource claims",
}
_UNSUPPORTED_CONTAINER_FIELDS = {
    "livenessProbe": "liveness probes",
    "readinessProbe": "readiness probes",
    "startupProbe": "startup probes",
    "lifecycle": "lifecycle hooks",
    "stdin": "stdin",
    "tty": "tty",
}


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


def _all_containers(pod: JSON) -> list[JSON]:
    spec = pod.get("spec", {})
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def references(pod: JSON) -> set[tuple[str, str, bool]]:
    """(kind, name, optional) of every ConfigMap and Secret the pod uses."""
    refs: set[tuple[str, str, bool]] = set()
    for volume in pod.get("spec", {}).get("volumes") or []:
        refs.update(_volume_sources(volume))
    for container in _all_containers(pod):
        refs.update(_env_sources(container))
    return refs


def token_requests(pod: JSON) -> set[tuple[str, int]]:
    """(audience, expirationSeconds) of every projected service-account token."""
    wanted = set()
    for volume in pod.get("spec", {}).get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken")
            if token is not None:
                wanted.add(
                    (
                        token.get("audience", ""),
                        int(token.get("expirationSeconds", TOKEN_SECONDS_DEFAULT)),
                    )
                )
    return wanted


async def fetch_sources(kube: Kube, pod: JSON) -> Sources:
    """Read what ``pod`` refers to. A missing required object raises PodConfigError."""
    namespace = pod["metadata"]["namespace"]
    sources = Sources()
    for kind, name, optional in sorted(references(pod)):
        plural = "configmaps" if kind == "configmap" else "secrets"
        try:
            obj = await kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except KubeApiError as exc:
            if exc.status == 404:
                if optional:
                    continue
                label = "configmap" if kind == "configmap" else "secret"
                raise PodConfigError(f'{label} "{name}" not found') from exc
            raise
        (sources.config_maps if kind == "configmap" else sources.secrets)[name] = obj
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


# ---------------------------------------------------------------- pure translation


def _data(obj: JSON, *, secret: bool) -> dict[str, bytes]:
    if secret:
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    values = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    values.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return values


def _pod_ip(pod: JSON, node_ip: str) -> str:
    if pod["spec"].get("hostNetwork"):
        return node_ip
    return (pod.get("status") or {}).get("podIP") or POD_IP


def field_value(pod: JSON, path: str, node_ip: str) -> str:
    """A downward-API fieldRef, as the kubelet resolves it."""
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.hostIP": node_ip,
        "status.hostIPs": node_ip,
        # Known once the pod has run (an adopted pod), else the backend fills it in.
        "status.podIP": _pod_ip(pod, node_ip),
        "status.podIPs": _pod_ip(pod, node_ip),
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)(?:\['(.+)'\])?", path)
    if match:
        values = meta.get(match.group(1)) or {}
        if match.group(2) is not None:
            return str(values.get(match.group(2), ""))
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise UnsupportedPodFeature(f"downward API field {path!r} is not supported")


@dataclass(frozen=True)
class NodeFacts:
    """What resolving a pod needs to know of its node."""

    ip: str
    allocatable: dict[str, str] = field(default_factory=dict)  # quantities, as in Node status


# A resourceFieldRef to a limit the container does not set reads the node's allocatable;
# to a request it does not set, 0 (pkg/kubelet/kubelet_pods.go with
# pkg/api/v1/resource/helpers.go: MergeContainerResourceLimits, ExtractContainerResourceValue).
_LIMIT_DEFAULTS = ("cpu", "memory", "ephemeral-storage")


def _resource_value(container: JSON, ref: JSON, node: NodeFacts) -> str:
    resource = ref["resource"]
    kind, _, name = resource.partition(".")
    raw = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if raw is None and kind == "limits" and name in _LIMIT_DEFAULTS:
        raw = node.allocatable.get(name)
    if raw is None and kind == "limits":
        raise UnsupportedPodFeature(
            f"resourceFieldRef {resource} of container {container['name']} has no value: "
            f"the container sets no limit and the node reports no allocatable {name}"
        )
    # The apiserver may store an unset divisor as "0"; the kubelet takes 0 as 1
    # (ExtractContainerResourceValue).
    divisor = parse_quantity(ref.get("divisor") or "1") or Decimal(1)
    if name == "cpu":  # the kubelet divides milli-values: a limit of 250m over 1 is 1
        value = parse_quantity(raw or "0") / divisor
    else:
        value = Decimal(int(parse_quantity(raw or "0").to_integral_value(ROUND_CEILING))) / divisor
    return str(int(value.to_integral_value(ROUND_CEILING)))


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: known variables replaced, $$ escapes, the rest kept."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, text)


def _env(pod: JSON, container: JSON, sources: Sources, node: NodeFacts) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("envFrom") or []:
        prefix = item.get("prefix", "")
        if "configMapRef" in item:
            obj = sources.config_maps.get(item["configMapRef"]["name"])
            data = _data(obj, secret=False) if obj else {}
        else:
            obj = sources.secrets.get(item["secretRef"]["name"])
            data = _data(obj, secret=True) if obj else {}
        env.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        source = var.get("valueFrom")
        if source is None:
            env[name] = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"], node.ip)
        elif "resourceFieldRef" in source:
            env[name] = _resource_value(container, source["resourceFieldRef"], node)
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if secret else "configMapKeyRef"]
            obj = (sources.secrets if secret else sources.config_maps).get(ref["name"])
            data = _data(obj, secret=secret) if obj else {}
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                label = "secret" if secret else "configmap"
                raise PodConfigError(
                    f"couldn't find key {ref['key']} in {label} "
                    f"{pod['metadata']['namespace']}/{ref['name']}"
                )
            env[name] = data[ref["key"]].decode(errors="replace")
        else:
            raise UnsupportedPodFeature(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env


def _key_files(
    data: dict[str, bytes], items: list[JSON] | None, mode: int, what: str
) -> list[File]:
    if not items:
        return [File(key, value, mode) for key, value in sorted(data.items())]
    files = []
    for item in items:
        if item["key"] not in data:
            raise PodConfigError(f"couldn't find key {item['key']} in {what}")
        files.append(File(item["path"], data[item["key"]], int(item.get("mode", mode))))
    return files


def _downward_files(pod: JSON, items: list[JSON], mode: int, node: NodeFacts) -> list[File]:
    files = []
    containers = {c["name"]: c for c in _all_containers(pod)}
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"], node.ip)
        else:
            ref = item["resourceFieldRef"]
            value = _resource_value(containers[ref["containerName"]], ref, node)
        files.append(File(item["path"], value.encode(), int(item.get("mode", mode))))
    return files


def _projected(pod: JSON, volume: JSON, sources: Sources, node: NodeFacts) -> Volume:
    projected = volume["projected"]
    mode = int(projected.get("defaultMode", 0o644))
    files: list[File] = []
    sensitive = False
    for source in projected.get("sources") or []:
        if "configMap" in source:
            ref = source["configMap"]
            obj = sources.config_maps.get(ref["name"])
            if obj is not None:
                files += _key_files(
                    _data(obj, secret=False), ref.get("items"), mode, f"configmap {ref['name']}"
                )
        elif "secret" in source:
            ref = source["secret"]
            obj = sources.secrets.get(ref["name"])
            sensitive = True
            if obj is not None:
                files += _key_files(
                    _data(obj, secret=True), ref.get("items"), mode, f"secret {ref['name']}"
                )
        elif "downwardAPI" in source:
            files += _downward_files(pod, source["downwardAPI"].get("items") or [], mode, node)
        elif "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            key = (
                token.get("audience", ""),
                int(token.get("expirationSeconds", TOKEN_SECONDS_DEFAULT)),
            )
            files.append(File(token["path"], sources.tokens[key].encode(), mode))
            sensitive = True
        else:
            raise UnsupportedPodFeature(
                f"volume {volume['name']}: projected source {sorted(source)} is not supported"
            )
    return Volume(volume["name"], "files", tuple(files), sensitive=sensitive)


def _volume(pod: JSON, volume: JSON, sources: Sources, node: NodeFacts) -> Volume:
    name = volume["name"]
    if "emptyDir" in volume:
        empty = volume["emptyDir"] or {}
        limit = empty.get("sizeLimit")
        return Volume(
            name,
            "emptyDir",
            medium=empty.get("medium", ""),
            size_limit_bytes=int(parse_quantity(limit)) if limit else None,
        )
    if "hostPath" in volume:
        return Volume(name, "hostPath", host_path=volume["hostPath"]["path"])
    if "configMap" in volume:
        ref = volume["configMap"]
        obj = sources.config_maps.get(ref["name"])
        data = _data(obj, secret=False) if obj else {}
        files = _key_files(
            data, ref.get("items"), int(ref.get("defaultMode", 0o644)), f"configmap {ref['name']}"
        )
        return Volume(name, "files", tuple(files))
    if "secret" in volume:
        ref = volume["secret"]
        obj = sources.secrets.get(ref["secretName"])
        data = _data(obj, secret=True) if obj else {}
        # The pod's modes, 0644 by default, as the kubelet writes them: a container whose
        # user is not root must read its secret. The backends keep the files from other
        # users of the host by the pod's private directory (as /var/lib/kubelet/pods is).
        mode = int(ref.get("defaultMode", 0o644))
        files = _key_files(data, ref.get("items"), mode, f"secret {ref['secretName']}")
        return Volume(name, "files", tuple(files), sensitive=True)
    if "downwardAPI" in volume:
        downward = volume["downwardAPI"]
        files = _downward_files(
            pod, downward.get("items") or [], int(downward.get("defaultMode", 0o644)), node
        )
        return Volume(name, "files", tuple(files))
    if "projected" in volume:
        return _projected(pod, volume, sources, node)
    kinds = sorted(k for k in volume if k != "name")
    raise UnsupportedPodFeature(
        f"volume {name}: type {', '.join(kinds)} is not supported "
        f"(supported: {', '.join(SUPPORTED_VOLUMES)})"
    )


def _resources(container: JSON) -> Resources:
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}

    def pick(name: str) -> Decimal | None:
        raw = limits.get(name, requests.get(name))
        return parse_quantity(raw) if raw is not None else None

    cpu, memory, gpus = pick("cpu"), pick("memory"), pick("nvidia.com/gpu")
    return Resources(
        cpu_millis=int((cpu * 1000).to_integral_value(ROUND_CEILING)) if cpu else None,
        memory_bytes=int(memory) if memory else None,
        gpus=int(gpus) if gpus else 0,
    )


def _container(pod: JSON, container: JSON, sources: Sources, node: NodeFacts) -> Container:
    name = container["name"]
    for key, what in _UNSUPPORTED_CONTAINER_FIELDS.items():
        if container.get(key):
            raise UnsupportedPodFeature(f"container {name}: {what} are not supported")
    if container.get("restartPolicy"):
        raise UnsupportedPodFeature(f"container {name}: sidecar containers are not supported")
    env = _env(pod, container, sources, node)
    mounts = tuple(
        Mount(m["name"], m["mountPath"], bool(m.get("readOnly")), m.get("subPath", ""))
        for m in container.get("volumeMounts") or []
    )
    return Container(
        name=name,
        image=container["image"],
        command=tuple(expand(a, env) for a in container.get("command") or []),
        args=tuple(expand(a, env) for a in container.get("args") or []),
        working_dir=container.get("workingDir") or None,
        env=tuple(EnvVar(k, v) for k, v in env.items()),
        mounts=mounts,
        resources=_resources(container),
        image_pull_policy=container.get("imagePullPolicy")
        or ("Always" if container["image"].endswith(":latest") else "IfNotPresent"),
    )


def pod_spec(
    pod: JSON, sources: Sources, *, node_ip: str, allocatable: dict[str, str] | None = None
) -> PodSpec:
    """The backend's view of ``pod`` on a node at ``node_ip`` offering ``allocatable``;
    raises UnsupportedPodFeature or PodConfigError."""
    spec, meta = pod["spec"], pod["metadata"]
    node = NodeFacts(node_ip, dict(allocatable or {}))
    for key, what in _UNSUPPORTED_POD_FIELDS.items():
        if spec.get(key):
            raise UnsupportedPodFeature(f"{what} is not supported")
    volumes = tuple(_volume(pod, v, sources, node) for v in spec.get("volumes") or [])
    known = {v.name for v in volumes}
    containers = [_container(pod, c, sources, node) for c in spec.get("containers") or []]
    init = [_container(pod, c, sources, node) for c in spec.get("initContainers") or []]
    for container in containers + init:
        for mount in container.mounts:
            if mount.volume not in known:
                raise UnsupportedPodFeature(
                    f"container {container.name}: volume {mount.volume} is not defined"
                )
    return PodSpec(
        uid=meta["uid"],
        namespace=meta["namespace"],
        name=meta["name"],
        containers=tuple(containers),
        init_containers=tuple(init),
        volumes=volumes,
        restart_policy=spec.get("restartPolicy", "Always"),
        active_deadline_seconds=spec.get("activeDeadlineSeconds"),
        termination_grace_period_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
        annotations=dict(meta.get("annotations") or {}),
        host_network=bool(spec.get("hostNetwork")),
        fs_group=(spec.get("securityContext") or {}).get("fsGroup"),
    )
