"""The pod → `PodSpec` translation (pure): the pod's fields, its containers and
their resources; what the node cannot provide raises UnsupportedPodFeature."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from vkpy.backend import Container, EnvVar, Mount, PodSpec, Resources
from vkpy.errors import UnsupportedPodFeature
from vkpy.jsontypes import JSON
from vkpy.quantity import parse_quantity
from vkpy.resolve.sources import Sources
from vkpy.resolve.values import NodeFacts, container_env, expand
from vkpy.resolve.volumes import volume_of

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
}


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
    env = container_env(pod, container, sources, node)
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
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        tty=bool(container.get("tty")),
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
    volumes = tuple(volume_of(pod, v, sources, node) for v in spec.get("volumes") or [])
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
