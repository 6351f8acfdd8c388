"""Env values as the kubelet resolves them: downward-API fields, resource fields,
ConfigMap and Secret keys, and `$(VAR)` expansion."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from vkpy.backend import POD_IP
from vkpy.errors import PodConfigError, UnsupportedPodFeature
from vkpy.jsontypes import JSON
from vkpy.quantity import parse_quantity
from vkpy.resolve.sources import Sources, object_data


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


def resource_value(container: JSON, ref: JSON, node: NodeFacts) -> str:
    """A resourceFieldRef of ``container``, as the kubelet resolves it."""
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


def container_env(pod: JSON, container: JSON, sources: Sources, node: NodeFacts) -> dict[str, str]:
    """The environment of ``container``: envFrom, then env in order, expanded."""
    env: dict[str, str] = {}
    for item in container.get("envFrom") or []:
        prefix = item.get("prefix", "")
        if "configMapRef" in item:
            obj = sources.config_maps.get(item["configMapRef"]["name"])
            data = object_data(obj, secret=False) if obj else {}
        else:
            obj = sources.secrets.get(item["secretRef"]["name"])
            data = object_data(obj, secret=True) if obj else {}
        env.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        source = var.get("valueFrom")
        if source is None:
            env[name] = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"], node.ip)
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"], node)
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if secret else "configMapKeyRef"]
            obj = (sources.secrets if secret else sources.config_maps).get(ref["name"])
            data = object_data(obj, secret=secret) if obj else {}
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
