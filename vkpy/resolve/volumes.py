"""A pod volume as a backend `Volume`: emptyDir and hostPath as they are, ConfigMaps,
Secrets, downward-API items and projected sources as files."""

from __future__ import annotations

from vkpy.backend import File, Volume
from vkpy.errors import PodConfigError, UnsupportedPodFeature
from vkpy.jsontypes import JSON
from vkpy.quantity import parse_quantity
from vkpy.resolve.sources import Sources, all_containers, object_data, token_key
from vkpy.resolve.values import NodeFacts, field_value, resource_value

SUPPORTED_VOLUMES = ("emptyDir", "configMap", "secret", "downwardAPI", "projected", "hostPath")


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
    containers = {c["name"]: c for c in all_containers(pod)}
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"], node.ip)
        else:
            ref = item["resourceFieldRef"]
            value = resource_value(containers[ref["containerName"]], ref, node)
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
                    object_data(obj, secret=False),
                    ref.get("items"),
                    mode,
                    f"configmap {ref['name']}",
                )
        elif "secret" in source:
            ref = source["secret"]
            obj = sources.secrets.get(ref["name"])
            sensitive = True
            if obj is not None:
                files += _key_files(
                    object_data(obj, secret=True), ref.get("items"), mode, f"secret {ref['name']}"
                )
        elif "downwardAPI" in source:
            files += _downward_files(pod, source["downwardAPI"].get("items") or [], mode, node)
        elif "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            files.append(File(token["path"], sources.tokens[token_key(token)].encode(), mode))
            sensitive = True
        else:
            raise UnsupportedPodFeature(
                f"volume {volume['name']}: projected source {sorted(source)} is not supported"
            )
    return Volume(volume["name"], "files", tuple(files), sensitive=sensitive)


def volume_of(pod: JSON, volume: JSON, sources: Sources, node: NodeFacts) -> Volume:
    """``volume`` of ``pod`` for the backend; raises UnsupportedPodFeature or PodConfigError."""
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
        data = object_data(obj, secret=False) if obj else {}
        files = _key_files(
            data, ref.get("items"), int(ref.get("defaultMode", 0o644)), f"configmap {ref['name']}"
        )
        return Volume(name, "files", tuple(files))
    if "secret" in volume:
        ref = volume["secret"]
        obj = sources.secrets.get(ref["secretName"])
        data = object_data(obj, secret=True) if obj else {}
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
