"""`PodmanBackend`: Kubernetes pods as local Podman pods.

How a pod runs:

- ``create`` pulls the images (per imagePullPolicy), stages the pod's files on the
  host, creates the Podman pod and every container (all in state "created"), then
  starts what may start: the first init container, or all app containers.
- From then on Podman's event stream drives the pod (`driver`): changed `PodRun`s go
  to the ``on_change`` callbacks, and `progress.plan` says what is next: start the
  next init container or the app containers, make a container's next instance once
  its back-off is over, stop everything past the deadline. A full resync every
  ``resync_seconds`` is the safety net under the events.
- Everything is derived from Podman's state and the objects' labels, so a new backend
  (after a crash, or on the next start) adopts the pods and carries on.
- ``delete`` stops the pod with the grace period, removes it with its containers and
  the pod's files, and returns once Podman confirms.

Podman is reached through its libpod REST API with aiohttp, not podman-py: podman-py is
synchronous (it would block the event loop or need a thread per call) and silently
drops ``nano_cpus``, so CPU limits would vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from vkpy.backend import Capacity, Health, LogOptions, PodRun, PodSpec, restart_delay
from vkpy.backends.podman import attach, forward, observed, spec, status, target, volumes
from vkpy.backends.podman import exec as podman_exec
from vkpy.backends.podman.api import PodmanApi, wait_until_ready
from vkpy.backends.podman.config import PodmanConfig
from vkpy.backends.podman.driver import Driver
from vkpy.backends.podman.service import PodmanService
from vkpy.errors import (
    BackendError,
    BackendUnavailable,
    ImagePullError,
    PodError,
    PodNotFound,
    PodRejected,
)
from vkpy.jsontypes import JSON
from vkpy.remote import Process, StreamRequest, Tunnel

logger = logging.getLogger(__name__)

SERVICE_READY_TIMEOUT = 30.0


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/vkpy/podman")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vkpy" / "podman"


def _host_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class PodmanBackend:
    """Runs one node's pods on the local Podman, through its REST API."""

    kind = "podman"

    def __init__(
        self,
        config: PodmanConfig,
        *,
        node_name: str,
        restart_delay: Callable[[int], float] = restart_delay,
    ) -> None:
        self.config = config
        self.node = node_name
        self.state_dir = config.state_dir or default_state_dir()
        self._delay = restart_delay
        self._callbacks: list[Callable[[PodRun], None]] = []
        self._api: PodmanApi | None = None
        self._driver: Driver | None = None
        self._service: PodmanService | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def api(self) -> PodmanApi:
        if self._api is None:
            raise BackendUnavailable("the Podman backend is not started")
        return self._api

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            raise BackendUnavailable("the Podman backend is not started")
        return self._driver

    @property
    def calls(self) -> Counter[str]:
        """Podman API calls made so far, by operation."""
        return self.api.calls

    async def start(self) -> None:
        socket = self.config.socket
        if socket is None:
            self._service = PodmanService(containers_conf=self.config.containers_conf)
            socket = await self._service.start()
        self._api = PodmanApi(
            socket,
            timeout=self.config.api_timeout_seconds,
            pull_timeout=self.config.pull_timeout_seconds,
        )
        await self._api.open()
        try:
            await wait_until_ready(
                self._api, timeout=SERVICE_READY_TIMEOUT if self._service else 0.0
            )
            await asyncio.to_thread(self.state_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
        except BaseException:
            await self.close()
            raise
        self._driver = Driver(
            self._api,
            node=self.node,
            state_dir=self.state_dir,
            delay=self._delay,
            resync_seconds=self.config.resync_seconds,
        )
        self._driver.callbacks = self._callbacks
        self._driver.start()
        logger.info("Podman backend for node %s started on %s", self.node, self._api.socket)

    async def close(self) -> None:
        """Stop watching and release the API; the pods keep running."""
        if self._driver is not None:
            await self._driver.stop()
            self._driver = None
        if self._api is not None:
            logger.info("podman API calls: %s", json.dumps(dict(self._api.calls)))
            await self._api.close()
            self._api = None
        if self._service is not None:
            await self._service.stop()
            self._service = None

    async def health(self) -> Health:
        try:
            await self.api.ping()
        except BackendError as exc:
            return Health(ok=False, message=str(exc))
        return Health(ok=True)

    async def capacity(self) -> Capacity | None:
        """The host's CPUs and memory (Podman shares them all), and the configured pods."""
        cpus = os.cpu_count()
        memory = await asyncio.to_thread(_host_memory_bytes)
        if not cpus or memory is None:
            return None
        return Capacity(cpu_millis=cpus * 1000, memory_bytes=memory, pods=self.config.max_pods)

    def on_change(self, callback: Callable[[PodRun], None]) -> None:
        self._callbacks.append(callback)

    # ------------------------------------------------------------ create

    async def create(self, pod: PodSpec) -> None:
        podman_pod = spec.pod_name(pod)
        pod_dir = volumes.pod_dir(self.state_dir, pod.uid)
        host_volumes = volumes.plan(
            pod,
            pod_dir=pod_dir,
            memory_dir=self.config.memory_dir,
            allowed_host_paths=self.config.allowed_host_paths,
        )
        deadline = None  # activeDeadlineSeconds counts from now, the pod's start
        if pod.active_deadline_seconds is not None:
            deadline = math.ceil(time.time() + pod.active_deadline_seconds)
        bodies = spec.container_bodies(pod, node=self.node, volumes=host_volumes, deadline=deadline)
        pod_body = spec.pod_body(
            pod, node=self.node, network=self.config.network, deadline=deadline
        )
        driver = self.driver
        async with driver.lock(pod.uid):
            if await self._exists(pod, podman_pod):
                return
            await self._pull(pod)
            try:
                await self.api.create_pod(pod_body)
                if pod.needs_pod_ip:  # made again with the IP the pod's network got
                    pod = pod.with_pod_ip(await self._sandbox_ip(podman_pod))
                    bodies = spec.container_bodies(
                        pod, node=self.node, volumes=host_volumes, deadline=deadline
                    )
                await asyncio.to_thread(self._stage, pod, host_volumes, pod_dir, bodies)
                for body in bodies.values():
                    await self.api.create_container(body)
            except BaseException as exc:
                await self._discard(pod.uid, podman_pod)
                if isinstance(exc, PodError | BackendUnavailable | ImagePullError):
                    raise
                if isinstance(exc, BackendError):
                    raise PodRejected(f"Podman refused pod {pod.key}: {exc}") from exc
                if isinstance(exc, OSError):
                    raise BackendUnavailable(f"cannot stage the files of {pod.key}: {exc}") from exc
                raise
            driver.remember(pod.uid, bodies)
        logger.info("created pod %s (uid %s) as Podman pod %s", pod.key, pod.uid, podman_pod)
        try:
            await driver.act(pod.uid)
        except BackendError as exc:  # created: the next refresh starts it
            logger.warning("pod %s (uid %s): starting failed: %s", pod.key, pod.uid, exc)
            driver.mark(pod.uid)

    async def _sandbox_ip(self, podman_pod: str) -> str:
        """The pod's IP before its containers exist: its infra container started alone,
        as the kubelet starts the sandbox first ("" when the pod has no network of its own)."""
        await self.api.start_pod(podman_pod)
        infra = await self.api.infra_container(podman_pod)
        if not infra:
            return ""
        inspect = await self.api.inspect_container(infra)
        return observed.ip_address(inspect)

    async def _exists(self, pod: PodSpec, podman_pod: str) -> bool:
        """Whether Podman has the pod; a pod a create left half-made (nothing of it ever
        ran) is removed, to be made again."""
        entries = await self.api.list_containers({spec.UID: pod.uid, spec.NODE: self.node})
        found = observed.group(filter(None, map(observed.from_list_entry, entries)))
        held = found.get(pod.uid)
        if held is None:
            return False
        if held.complete or not held.pod:
            logger.debug("pod %s (uid %s) is in Podman already", pod.key, pod.uid)
            return True
        logger.warning("pod %s (uid %s) was created half-way: creating it again", pod.key, pod.uid)
        with contextlib.suppress(PodNotFound):
            await self.api.remove_pod(held.pod)
        return False

    @staticmethod
    def _stage(
        pod: PodSpec,
        host_volumes: dict[str, spec.HostVolume],
        pod_dir: Path,
        bodies: dict[str, JSON],
    ) -> None:
        volumes.stage(pod, host_volumes, pod_dir=pod_dir)
        volumes.save_specs(pod_dir, bodies)

    async def _pull(self, pod: PodSpec) -> None:
        done: set[tuple[str, str]] = set()
        for container in (*pod.init_containers, *pod.containers):
            reference = spec.normalize_image(container.image)
            policy = container.image_pull_policy
            if (reference, policy) in done:
                continue
            done.add((reference, policy))
            if policy == "Never":
                if not await self.api.image_exists(reference):
                    raise ImagePullError(  # the kubelet's words
                        f'Container image "{container.image}" is not present with pull '
                        "policy of Never",
                        container=container.name,
                        never_pull=True,
                    )
                continue
            logger.debug("pod %s: pulling %s (policy %s)", pod.key, reference, policy)
            await self.api.pull(
                reference,
                policy="always" if policy == "Always" else "missing",
                container=container.name,
            )

    async def _discard(self, uid: str, podman_pod: str) -> None:
        """Undo a create that failed half-way; best effort, the error at hand matters more."""
        with contextlib.suppress(BackendError):
            await self.api.remove_pod(podman_pod)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(
                volumes.remove,
                volumes.pod_dir(self.state_dir, uid),
                self.config.memory_dir / uid,
            )

    # ------------------------------------------------------------ delete

    async def delete(self, uid: str, *, grace_seconds: int) -> None:
        driver = self.driver
        driver.deleting(uid)
        try:
            async with driver.lock(uid):
                labels = {spec.UID: uid, spec.NODE: self.node}
                entries = await self.api.list_containers(labels)
                # A create cut short can leave a Podman pod with no container in it yet.
                named = {str(e["PodName"]) for e in entries if e.get("PodName")}
                pods = sorted(named | set(await self.api.list_pods(labels)))
                for podman_pod in pods:
                    with contextlib.suppress(PodNotFound):
                        await self.api.stop_pod(podman_pod, grace_seconds=max(grace_seconds, 0))
                    with contextlib.suppress(PodNotFound):
                        await self.api.remove_pod(podman_pod)
                for entry in entries:
                    if not entry.get("PodName"):
                        with contextlib.suppress(PodNotFound):
                            await self.api.remove_container(str(entry["Id"]))
                with contextlib.suppress(PodError):  # a UID unfit for paths has no files
                    pod_dir = volumes.pod_dir(self.state_dir, uid)
                    await asyncio.to_thread(volumes.remove, pod_dir, self.config.memory_dir / uid)
                if entries or pods:
                    logger.info("deleted pod uid %s (Podman pod %s)", uid, ", ".join(pods))
        finally:
            driver.deleted(uid)

    # ------------------------------------------------------------ list and logs

    async def list(self) -> Mapping[str, PodRun]:
        driver = self.driver
        pods = await driver.observe(None)
        await self._remove_cut_short()
        return status.pod_runs(
            pods,
            now=time.time(),
            delay=self._delay,
            pod_ips=driver.pod_ips,
            sandbox_errors=driver.sandbox_errors(),
        )

    async def _remove_cut_short(self) -> None:
        driver = self.driver
        for uid, podman_pod in list(driver.cut_short.items()):
            async with driver.lock(uid):
                driver.cut_short.pop(uid, None)
                held = (await driver.observe(uid)).get(uid)  # a create may have mended it
                if held is None or held.complete:
                    continue
                logger.warning(
                    "Podman pod %s (uid %s) was left half-made by an earlier agent: removing it",
                    podman_pod,
                    uid,
                )
                with contextlib.suppress(PodNotFound):
                    await self.api.remove_pod(podman_pod)

    async def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        pod = (await self.driver.observe(uid)).get(uid)
        if pod is None:
            raise PodNotFound(f"no pod with uid {uid} in Podman")
        history = pod.history(container)
        if history is None:
            raise PodNotFound(f"pod {pod.namespace}/{pod.name} has no container {container}")
        instance = history.previous if options.previous else history.current
        if instance is None:
            raise PodNotFound(
                f"container {container} of {pod.namespace}/{pod.name} has not restarted"
            )
        async for chunk in self.api.logs(
            instance.id,
            follow=options.follow,
            tail=options.tail_lines,
            since=options.since,
            timestamps=options.timestamps,
        ):
            yield chunk

    # ------------------------------------------------------------ exec, attach, port-forward

    async def exec(self, request: StreamRequest) -> Process:
        pods = await self.driver.observe(request.uid)
        instance = target.running(pods, request.uid, request.container)
        where = f"exec in {instance.namespace}/{instance.name}/{request.container}"
        return await podman_exec.start(self.api, instance.id, request, name=where)

    async def attach(self, request: StreamRequest) -> Process:
        pods = await self.driver.observe(request.uid)
        instance = target.running(pods, request.uid, request.container)
        where = f"attach to {instance.namespace}/{instance.name}/{request.container}"
        return await attach.start(self.api, instance.id, request, name=where)

    async def forward(self, uid: str, port: int) -> Tunnel:
        infra = target.sandbox(await self.driver.observe(uid), uid)
        where = f"{infra.namespace}/{infra.name}"
        inspect = await self.api.inspect_container(infra.id)
        return await forward.reach(
            inspect, port, timeout=self.config.api_timeout_seconds, where=where
        )
