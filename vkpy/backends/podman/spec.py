"""PodSpec → libpod JSON bodies for the Podman pod and its containers. Pure functions.

A Kubernetes pod becomes a Podman pod (its infra container holds the network, UTS and
IPC namespaces) plus one Podman container per pod container. Every object carries
labels, and labels are all the backend needs to find and drive a pod again after a
restart: the pod UID and node name on everything; on containers also the container's
name, kind (init or app), position and restart count; and the pod-level facts acted
on later (restart policy, deadline, grace period, how many containers it has). A
restart is a new container instance named ``<pod>-<container>-<restart count>``, made
from the same body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from vkpy.backend import Container, PodSpec
from vkpy.errors import UnsupportedPodFeature
from vkpy.jsontypes import JSON

Network = Literal["bridge", "host", "none"]

UID = "vkpy.io/pod-uid"
NODE = "vkpy.io/node"
NAMESPACE = "vkpy.io/namespace"
NAME = "vkpy.io/name"
CONTAINER = "vkpy.io/container"
INIT = "vkpy.io/init"
INDEX = "vkpy.io/index"
RESTARTS = "vkpy.io/restart-count"
POLICY = "vkpy.io/restart-policy"
DEADLINE = "vkpy.io/deadline"  # epoch seconds (integer) after which the pod is ended
GRACE = "vkpy.io/grace-seconds"
CONTAINERS = "vkpy.io/containers"  # how many containers the pod has: complete or not

CPU_PERIOD_US = 100_000
CPU_QUOTA_MIN_US = 1_000  # the kernel refuses smaller quotas
HOSTNAME_MAX = 63

_UID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class HostVolume:
    """Where a pod volume lives on the host, bind-mounted into containers."""

    source: str  # absolute host path
    read_only: bool = False  # forced read-only, whatever the mount asks (files volumes)


def check_uid(uid: str) -> str:
    """The pod UID names host directories and Podman objects: refuse anything odd."""
    if not _UID_PATTERN.match(uid):
        raise UnsupportedPodFeature(f"pod UID {uid!r} is not usable as a name")
    return uid


def pod_name(pod: PodSpec) -> str:
    return f"vkpy-{pod.namespace}-{pod.name}-{check_uid(pod.uid)[:8]}"


def container_name(podman_pod: str, container: str, restart_count: int) -> str:
    return f"{podman_pod}-{container}-{restart_count}"


def hostname(pod_name_: str) -> str:
    """The kubelet's rule: the pod name, cut to 63 characters, no trailing '-' or '.'."""
    return pod_name_[:HOSTNAME_MAX].rstrip("-.")


def normalize_image(reference: str) -> str:
    """Qualify short names the way Kubernetes runtimes do (``busybox`` is Docker Hub's)."""
    first, slash, _ = reference.partition("/")
    if not slash:
        return f"docker.io/library/{reference}"
    if "." in first or ":" in first or first == "localhost":
        return reference
    return f"docker.io/{reference}"


def pod_labels(pod: PodSpec, *, node: str, deadline: int | None) -> dict[str, str]:
    labels = {
        UID: pod.uid,
        NODE: node,
        NAMESPACE: pod.namespace,
        NAME: pod.name,
        POLICY: pod.restart_policy,
        GRACE: str(pod.termination_grace_period_seconds),
        CONTAINERS: str(len(pod.init_containers) + len(pod.containers)),
    }
    if deadline is not None:
        labels[DEADLINE] = str(deadline)
    return labels


def pod_body(pod: PodSpec, *, node: str, network: Network, deadline: int | None) -> JSON:
    mode: Network = "host" if pod.host_network else network
    body: JSON = {
        "name": pod_name(pod),
        "labels": pod_labels(pod, node=node, deadline=deadline),
        "netns": {"nsmode": mode},
    }
    if mode != "host":
        body["hostname"] = hostname(pod.name)
    return body


def resource_limits(container: Container) -> JSON:
    resources = container.resources
    if resources.gpus > 0:
        raise UnsupportedPodFeature(
            f"container {container.name} asks for {resources.gpus} GPU(s); "
            "this Podman node has none"
        )
    limits: JSON = {}
    if resources.cpu_millis is not None:
        quota = max(resources.cpu_millis * CPU_PERIOD_US // 1000, CPU_QUOTA_MIN_US)
        limits["cpu"] = {"quota": quota, "period": CPU_PERIOD_US}
    if resources.memory_bytes is not None:
        # swap equal to the limit: no swap on top, as the kubelet does
        limits["memory"] = {"limit": resources.memory_bytes, "swap": resources.memory_bytes}
    return limits


def _relative(path: str, what: str) -> PurePosixPath:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts:
        raise UnsupportedPodFeature(f"{what} {path!r} must be a relative path inside the volume")
    return relative


def mounts(container: Container, volumes: Mapping[str, HostVolume]) -> list[JSON]:
    result: list[JSON] = []
    for mount in container.mounts:
        volume = volumes.get(mount.volume)
        if volume is None:
            raise UnsupportedPodFeature(
                f"container {container.name} mounts volume {mount.volume!r}, "
                "which the pod does not define"
            )
        if not PurePosixPath(mount.path).is_absolute():
            raise UnsupportedPodFeature(f"mount path {mount.path!r} must be absolute")
        source = PurePosixPath(volume.source)
        if mount.sub_path:
            source = source / _relative(mount.sub_path, "subPath")
        read_only = mount.read_only or volume.read_only
        result.append(
            {
                "destination": mount.path,
                "type": "bind",
                "source": str(source),
                "options": ["rbind", "ro" if read_only else "rw"],
            }
        )
    return result


def container_body(
    pod: PodSpec,
    container: Container,
    *,
    node: str,
    init: bool,
    index: int,
    volumes: Mapping[str, HostVolume],
    deadline: int | None,
    restart_count: int = 0,
) -> JSON:
    podman_pod = pod_name(pod)
    labels = pod_labels(pod, node=node, deadline=deadline)
    labels |= {
        CONTAINER: container.name,
        INIT: "true" if init else "false",
        INDEX: str(index),
        RESTARTS: str(restart_count),
    }
    body: JSON = {
        "name": container_name(podman_pod, container.name, restart_count),
        "pod": podman_pod,
        "image": normalize_image(container.image),
        "labels": labels,
        "init": True,  # catatonit as PID 1: SIGTERM reaches the program, zombies reaped
        "stop_timeout": pod.termination_grace_period_seconds,
        "httpproxy": False,  # the host's proxy variables are not the pod's business
        # stdin and terminal for attach; Podman has no stdinOnce: the first attach to end
        # closes stdin whatever it says (conmon runs without --leave-stdin-open)
        "stdin": container.stdin,
        "terminal": container.tty,
    }
    if container.command:
        body["entrypoint"] = list(container.command)  # with no args: the image CMD is dropped
    if container.args:
        body["command"] = list(container.args)
    if container.working_dir:
        body["work_dir"] = container.working_dir
        body["create_working_dir"] = True
    if container.env:
        body["env"] = {var.name: var.value for var in container.env}  # the last one wins
    if container.mounts:
        body["mounts"] = mounts(container, volumes)
    if pod.fs_group is not None:  # the group the volumes' files belong to
        body["groups"] = [str(pod.fs_group)]
    limits = resource_limits(container)
    if limits:
        body["resource_limits"] = limits
    return body


def container_bodies(
    pod: PodSpec, *, node: str, volumes: Mapping[str, HostVolume], deadline: int | None
) -> dict[str, JSON]:
    """Every container's create body, keyed by container name: init containers first."""
    names = [c.name for c in (*pod.init_containers, *pod.containers)]
    if len(set(names)) != len(names):
        raise UnsupportedPodFeature("container names must be unique within the pod")
    bodies: dict[str, JSON] = {}
    for index, container in enumerate(pod.init_containers):
        bodies[container.name] = container_body(
            pod, container, node=node, init=True, index=index, volumes=volumes, deadline=deadline
        )
    for index, container in enumerate(pod.containers):
        bodies[container.name] = container_body(
            pod, container, node=node, init=False, index=index, volumes=volumes, deadline=deadline
        )
    return bodies


def restarted(body: JSON, *, restart_count: int) -> JSON:
    """The body of a container's next instance: same spec, new name and restart count."""
    labels = {**body["labels"], RESTARTS: str(restart_count)}
    name = container_name(body["pod"], labels[CONTAINER], restart_count)
    return {**body, "name": name, "labels": labels}
