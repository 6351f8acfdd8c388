"""The harness the contract's checks run on: a started backend, what the contract allows
to differ between backends, pods on a busybox image, and the clean-up after them."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from vkpy.backend import (
    Backend,
    Container,
    ContainerStatus,
    EnvVar,
    LogOptions,
    LogReader,
    Mount,
    PodRun,
    PodSpec,
    RestartPolicy,
    Terminated,
    Volume,
    capped,
)
from vkpy.testing.waiting import WaitTimeout, listed

IMAGE = "localhost/busybox:latest"

# Values that break anything passing them through a shell, a script or a file format.
HOSTILE_VALUES = (
    "plain",
    "it's \"double\" and 'single' quoted",
    "$(touch /tmp/pwned) `touch /tmp/pwned` ${HOME} $HOME $$ $0 $1",
    "; | & && || > < >> 2>&1 * ? [a-z] ~ # !",
    "line one\nline two\n\ttabbed\r\nlast",
    "unicode: é ü 日本語 🚀 \u202e reversed",
    "back\\slash \\n not a newline %s %d %n \\",
    "  leading and trailing spaces  ",
    "",
    "=starts with equals=",
    "\x1b[31mterminal escape\x1b[0m",
)
# Prints one ``NAME:<hex of the value>`` line per variable, so any byte can be compared.
HEX = "od -An -v -tx1 | tr -d ' \\n'"


class ContractFailure(AssertionError):
    """The backend broke the contract."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractFailure(message)


@dataclass(frozen=True)
class Traits:
    """Where backends may differ and the contract still holds; each backend's tests say
    which apply to it."""

    # How long past its deadline plus grace period a pod may take to end.
    deadline_slack: float = 5.0
    # The reason a container killed at the pod's deadline ends with: the kubelet's
    # "Error"; the job scripts report "DeadlineExceeded".
    deadline_container_reason: str = "Error"
    # Seconds before a failed container's first restart; None for the kubelet's 10 s,
    # too long for the checks to wait for (they then do not wait for restarts).
    restart_backoff: float | None = None


@dataclass(frozen=True)
class Host:
    """Questions a check asks the host directly, not through the backend's list()."""

    # The IDs under which the host (scheduler, container engine) holds the pod.
    instances: Callable[[Backend, str], Awaitable[list[str]]]
    # How many pods (jobs) this backend object has started so far.
    submissions: Callable[[Backend], int]


@dataclass
class Harness:
    """A started backend plus the means to run checks on it and clean up after them.

    ``successor`` builds a second backend object over the same host and node, as an agent
    restarted after a crash would; it may close the first. ``host`` answers questions
    list() cannot. Checks that need either fail when it is missing."""

    backend: Backend
    image: str = IMAGE
    timeout: float = 60.0
    poll_seconds: float = 0.2
    prefix: str = "contract"
    traits: Traits = Traits()
    successor: Callable[[], Awaitable[Backend]] | None = None
    host: Host | None = None
    created: list[str] = field(default_factory=list)

    async def __aenter__(self) -> Harness:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for uid in reversed(self.created):
            await self.backend.delete(uid, grace_seconds=0)

    # ------------------------------------------------------------ building pods

    def container(
        self,
        name: str,
        script: str,
        *,
        args: Sequence[str] = (),
        env: Sequence[EnvVar] = (),
        mounts: Sequence[Mount] = (),
    ) -> Container:
        """A busybox container running ``sh -c script`` (``args`` become $1...)."""
        command = ("sh", "-c", script, name, *args)
        return Container(
            name=name, image=self.image, command=command, env=tuple(env), mounts=tuple(mounts)
        )

    def pod(
        self,
        name: str,
        containers: Sequence[Container],
        *,
        init_containers: Sequence[Container] = (),
        volumes: Sequence[Volume] = (),
        restart_policy: RestartPolicy = "Never",
        active_deadline_seconds: int | None = None,
    ) -> PodSpec:
        return PodSpec(
            uid=str(uuid.uuid4()),
            namespace="contract",
            name=f"{self.prefix}-{name}",
            containers=tuple(containers),
            init_containers=tuple(init_containers),
            volumes=tuple(volumes),
            restart_policy=restart_policy,
            active_deadline_seconds=active_deadline_seconds,
            termination_grace_period_seconds=2,
        )

    # ------------------------------------------------------------ driving the backend

    async def create(self, pod: PodSpec) -> None:
        if pod.uid not in self.created:
            self.created.append(pod.uid)
        await self.backend.create(pod)

    async def wait_for(
        self, uid: str, predicate: Callable[[PodRun | None], bool], what: str
    ) -> PodRun | None:
        """Poll ``list()`` until ``predicate`` holds for the pod's record (None: absent)."""
        try:
            return await listed(
                self.backend,
                uid,
                predicate,
                what,
                timeout=self.timeout,
                interval=self.poll_seconds,
            )
        except WaitTimeout as timed_out:
            raise ContractFailure(str(timed_out)) from None

    async def finished(self, uid: str) -> PodRun:
        """The pod's record once every app container has terminated."""
        return present(uid, await self.wait_for(uid, ended, "every container to terminate"))

    def reader(self) -> LogReader:
        backend = self.backend
        if not isinstance(backend, LogReader):
            raise ContractFailure(f"{type(backend).__name__} does not implement LogReader")
        return backend

    async def logs(self, uid: str, container: str, options: LogOptions | None = None) -> bytes:
        """What the kubelet API would send: the reader's logs, capped at ``limit_bytes``."""
        options = options or LogOptions()
        read = self.reader().logs(uid, container, options)
        return b"".join([chunk async for chunk in capped(read, options.limit_bytes)])

    async def stream(
        self, uid: str, container: str, options: LogOptions
    ) -> list[tuple[bytes, float]]:
        """The chunks logs() yields, each with the seconds since the call when it came."""
        began = time.monotonic()
        reader = self.reader()
        return [
            (chunk, time.monotonic() - began)
            async for chunk in reader.logs(uid, container, options)
        ]

    async def restarted(self) -> Backend:
        """Swap the backend for its successor (which then cleans up after the checks)."""
        if self.successor is None:
            raise ContractFailure("this harness has no successor to adopt the pods")
        self.backend = await self.successor()
        return self.backend

    def requires_host(self) -> Host:
        if self.host is None:
            raise ContractFailure("this harness cannot ask the host about its pods")
        return self.host


def present(uid: str, run: PodRun | None) -> PodRun:
    if run is None:
        raise ContractFailure(f"pod {uid} vanished")
    return run


def ended(run: PodRun | None) -> bool:
    return (
        run is not None
        and bool(run.containers)
        and all(isinstance(c.state, Terminated) for c in run.containers)
    )


def status_of(run: PodRun, name: str, *, init: bool = False) -> ContainerStatus:
    statuses = run.init_containers if init else run.containers
    for candidate in statuses:
        if candidate.name == name:
            return candidate
    raise ContractFailure(f"no status for container {name} in {run}")


def terminated(status: ContainerStatus) -> Terminated:
    if not isinstance(status.state, Terminated):
        raise ContractFailure(f"{status.name} is not terminated: {status}")
    return status.state


def hex_lines(output: bytes) -> dict[str, bytes]:
    """``NAME:<hex>`` lines of the output, decoded."""
    found: dict[str, bytes] = {}
    for line in output.decode("ascii", errors="replace").splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_./-]+):([0-9a-f]*)", line.strip())
        if match:
            found[match[1]] = bytes.fromhex(match[2])
    return found
