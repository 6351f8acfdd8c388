"""The backend interface: what the node agent asks of Podman, Slurm or HTCondor.

The agent hands a backend a fully resolved `PodSpec`: env values, ConfigMap, Secret,
downward-API and service-account-token file contents are looked up before the
backend sees the pod, so backends never talk to Kubernetes. The backend answers with
`PodRun` records, one per pod it holds for this node, all of them in one call.

Only frozen dataclasses cross the interface. The core protocol is `Backend`;
optional capabilities are separate protocols (`PodNotifier`, `LogReader`) that the
agent checks with ``isinstance``.

Restart policy is the backend's to apply, because what can be restarted differs
(a Podman container, a whole Slurm job); `restart_delay` gives every backend the
kubelet's back-off. The agent derives the pod phase from what the backend reports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from vkpy.aio import backoff

RestartPolicy = Literal["Always", "OnFailure", "Never"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]

# The kubelet's crash-loop back-off: 10 s doubling, capped at 5 minutes.
RESTART_BACKOFF_INITIAL = 10.0
RESTART_BACKOFF_MAX = 300.0


def restart_delay(restart_count: int) -> float:
    """Seconds to wait before restart number ``restart_count + 1``."""
    return backoff(restart_count, first=RESTART_BACKOFF_INITIAL, cap=RESTART_BACKOFF_MAX)


def should_restart(policy: RestartPolicy, exit_code: int) -> bool:
    """Whether a container (or job) that ended with ``exit_code`` runs again."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


# ---------------------------------------------------------------- what goes in


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str


@dataclass(frozen=True)
class File:
    """One file of a projected volume; ``path`` is relative to the volume's root."""

    path: str
    content: bytes = field(repr=False)  # may be secret: never in reprs or logs
    mode: int = 0o644


@dataclass(frozen=True)
class Volume:
    """A pod volume. ``files`` volumes hold ConfigMap, Secret, downward-API and token data."""

    name: str
    kind: Literal["emptyDir", "files", "hostPath"]
    files: tuple[File, ...] = ()
    sensitive: bool = False  # holds secret data: never logged
    host_path: str | None = None
    medium: Literal["", "Memory"] = ""
    size_limit_bytes: int | None = None


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool = False
    sub_path: str = ""


@dataclass(frozen=True)
class Resources:
    """What a container may use: limits, or requests where no limit is set."""

    cpu_millis: int | None = None
    memory_bytes: int | None = None
    gpus: int = 0


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] = ()  # replaces the image's entrypoint when set
    args: tuple[str, ...] = ()  # replaces the image's cmd when set
    working_dir: str | None = None
    env: tuple[EnvVar, ...] = field(default=(), repr=False)
    mounts: tuple[Mount, ...] = ()
    resources: Resources = Resources()
    image_pull_policy: PullPolicy = "IfNotPresent"
    # The container's own stdio, for `kubectl attach`: stdin kept open (closed after the
    # first attach ends with ``stdin_once``) and a terminal.
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False


@dataclass(frozen=True)
class PodSpec:
    """A pod as a backend sees it: everything resolved, nothing left to look up."""

    uid: str
    namespace: str
    name: str
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    restart_policy: RestartPolicy = "Always"
    active_deadline_seconds: int | None = None
    termination_grace_period_seconds: int = 30
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    host_network: bool = False
    fs_group: int | None = None  # securityContext.fsGroup: owns the volumes' files

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def needs_pod_ip(self) -> bool:
        """Whether a value waits for the pod's IP (`POD_IP`)."""
        return any(
            POD_IP in text
            for c in (*self.init_containers, *self.containers)
            for text in (*c.command, *c.args, *(v.value for v in c.env))
        )

    def with_pod_ip(self, ip: str) -> PodSpec:
        """The pod with `POD_IP` replaced by ``ip`` in env values, command and args."""

        def fill(text: str) -> str:
            return text.replace(POD_IP, ip)

        def container(c: Container) -> Container:
            env = tuple(replace(v, value=fill(v.value)) for v in c.env)
            command, args = tuple(map(fill, c.command)), tuple(map(fill, c.args))
            return replace(c, env=env, command=command, args=args)

        return replace(
            self,
            containers=tuple(map(container, self.containers)),
            init_containers=tuple(map(container, self.init_containers)),
        )


# The pod's IP where the downward API asks for it (status.podIP, status.podIPs, and $(VAR)
# expansions of those) before the pod has one: the backend fills it in once the pod's
# network exists, before any container starts, as the kubelet does with its sandbox's IP.
# Two ASCII record separators: no ConfigMap, Secret or field value holds them by chance.
POD_IP = "\x1evkpy:status.podIP\x1e"


# ---------------------------------------------------------------- what comes out


@dataclass(frozen=True)
class Waiting:
    reason: str  # ContainerCreating, PodInitializing, ErrImagePull, CrashLoopBackOff...
    message: str = ""


# How a waiting container's message begins while its pod's sandbox (the pod's own
# network and namespaces) fails to be made and is retried; the agent then sends the
# kubelet's FailedCreatePodSandBox Event with the message.
SANDBOX_FAILED = "Failed to create pod sandbox: "


@dataclass(frozen=True)
class Running:
    started_at: datetime


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str  # Completed, Error, OOMKilled, DeadlineExceeded...
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    signal: int | None = None


ContainerState = Waiting | Running | Terminated


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    state: ContainerState
    last_state: Terminated | None = None
    restart_count: int = 0
    image: str = ""
    image_id: str = ""
    container_id: str = ""  # scheme://id, e.g. podman://3f2a..., slurm://1234/main


@dataclass(frozen=True)
class PodRun:
    """The backend's record of one pod it holds."""

    uid: str
    namespace: str
    name: str
    containers: tuple[ContainerStatus, ...] = ()
    init_containers: tuple[ContainerStatus, ...] = ()
    pod_ip: str | None = None
    reason: str = ""  # pod-level, e.g. DeadlineExceeded, NodeFail, Preempted
    message: str = ""
    job_id: str = ""  # the backend's own id (Slurm job, HTCondor cluster.proc, Podman pod)


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Capacity:
    cpu_millis: int
    memory_bytes: int
    pods: int
    gpus: int = 0


@dataclass(frozen=True)
class LogOptions:
    """The kubelet's log query. A `LogReader` honours all but ``limit_bytes``, which its
    caller applies with `capped`: one rule for every backend."""

    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since: datetime | None = None
    limit_bytes: int | None = None
    previous: bool = False


async def capped(chunks: AsyncIterator[bytes], limit: int | None) -> AsyncIterator[bytes]:
    """The first ``limit`` bytes of ``chunks`` (all of them without a limit). Reading stops
    there, so a remote reader's command ends as soon as the limit is reached."""
    left = limit
    try:
        async for chunk in chunks:
            piece = chunk if left is None else chunk[:left]
            if piece:
                yield piece
            if left is not None:
                left -= len(piece)
                if left <= 0:
                    return
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


# ---------------------------------------------------------------- protocols


@runtime_checkable
class Backend(Protocol):
    """Runs pods for one node. Every method is safe to call again after a failure."""

    kind: str  # "podman", "slurm", "htcondor": the node's provider taint value

    async def start(self) -> None:
        """Connect and prepare; called once before anything else."""

    async def close(self) -> None:
        """Release connections. Pods and jobs keep running for the next start to adopt."""

    async def health(self) -> Health:
        """Whether the backend can run pods now; the node's Ready condition follows it."""

    async def capacity(self) -> Capacity | None:
        """What the backend offers, or None to use the configured capacity."""

    async def create(self, pod: PodSpec) -> None:
        """Start ``pod``. A pod with this UID that exists already is left alone, so a
        retried create never starts a pod twice. Raises PodRejected, ImagePullError,
        BackendUnavailable."""

    async def delete(self, uid: str, *, grace_seconds: int) -> None:
        """Stop the pod, allowing ``grace_seconds`` for a clean exit, and remove it.
        Returns only when the backend confirms it is gone; a missing pod is not an error."""

    async def list(self) -> Mapping[str, PodRun]:
        """Every pod this node holds in the backend, keyed by pod UID, in one query."""


@runtime_checkable
class PodNotifier(Protocol):
    """A backend that pushes changes instead of waiting to be polled."""

    def on_change(self, callback: Callable[[PodRun], None]) -> None:
        """Call ``callback`` with the new record whenever a pod's state changes."""


@runtime_checkable
class Paced(Protocol):
    """A polled backend that says how often it should be polled (it may answer from
    what it read last when nothing is due)."""

    @property
    def poll_seconds(self) -> float: ...


@runtime_checkable
class LogReader(Protocol):
    """A backend that serves container logs to the kubelet API."""

    def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        """Log bytes as they are (one line or many per chunk); endless while following.
        Raises PodNotFound when the pod or container is unknown."""
