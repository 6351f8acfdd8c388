"""What Podman holds for the node's pods, as plain values. Pure functions.

The input is Podman's container list (one call for the whole node) and, for container
instances that have ended, their inspect record (read once: it holds OOMKilled and
sub-second times). Each Podman container is an `Instance`: one run of one of a pod's
containers, told apart by the labels `spec` puts on it. Instances are grouped by pod
UID into a `PodState`, and by container name into a `History`, newest run first.

Times: the list gives Unix seconds, and Podman writes its zero time (year 1) for
"never": -62135596800 as a Unix time, ``0001-01-01T00:00:00Z`` in inspect.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import cast

from vkpy.backend import RestartPolicy
from vkpy.backends.podman import spec
from vkpy.jsontypes import JSON

RUNNING_STATES = frozenset({"running", "paused", "stopping"})
ENDED_STATES = frozenset({"exited", "stopped"})
NOT_STARTED_STATES = frozenset({"created", "configured", "initialized"})
START_ERROR_EXIT_CODE = 128  # what runtimes report for a container that could not start


def unix_time(value: object) -> datetime | None:
    """A Unix time from Podman's list output; zero and negative (year 1) mean unset."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value, UTC)


def podman_time(value: object) -> datetime | None:
    """An RFC 3339 time from Podman (nanoseconds allowed); ``0001-01-01...`` means unset."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    date, dot, rest = text.partition(".")
    if dot:  # Python reads at most microseconds: cut the fraction to 6 digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{date}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Instance:
    """One Podman container: one run (or the next run) of one of the pod's containers."""

    id: str
    uid: str
    namespace: str
    name: str
    pod: str  # the Podman pod's name
    container: str  # "" for the pod's infra container
    init: bool
    index: int
    restart_count: int
    policy: RestartPolicy
    deadline: int | None
    grace_seconds: int
    expected: int | None  # containers the pod has; unknown for pods without the label
    state: str
    exit_code: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    image: str = ""
    image_id: str = ""
    oom_killed: bool = False
    error: str = ""

    @property
    def infra(self) -> bool:
        return not self.container

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def not_started(self) -> bool:
        return self.state in NOT_STARTED_STATES


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _policy(value: str | None) -> RestartPolicy:
    if value in ("Always", "OnFailure", "Never"):
        return cast(RestartPolicy, value)
    return "Always"


def from_list_entry(entry: JSON) -> Instance | None:
    """An `Instance` from one entry of ``GET /libpod/containers/json``; None if not ours."""
    labels: dict[str, str] = entry.get("Labels") or {}
    uid = labels.get(spec.UID)
    if not uid or not entry.get("Id"):
        return None
    deadline = labels.get(spec.DEADLINE)
    return Instance(
        id=str(entry["Id"]),
        uid=uid,
        namespace=labels.get(spec.NAMESPACE, ""),
        name=labels.get(spec.NAME, ""),
        pod=str(entry.get("PodName") or ""),
        container="" if entry.get("IsInfra") else labels.get(spec.CONTAINER, ""),
        init=labels.get(spec.INIT) == "true",
        index=_int(labels.get(spec.INDEX), 0),
        restart_count=_int(labels.get(spec.RESTARTS), 0),
        policy=_policy(labels.get(spec.POLICY)),
        deadline=_int(deadline, 0) if deadline else None,
        grace_seconds=_int(labels.get(spec.GRACE), 30),
        expected=_int(labels[spec.CONTAINERS], 0) if spec.CONTAINERS in labels else None,
        state=str(entry.get("State") or "unknown"),
        exit_code=_int(entry.get("ExitCode"), 0),
        started_at=unix_time(entry.get("StartedAt")),
        finished_at=unix_time(entry.get("ExitedAt")),
        image=str(entry.get("Image") or ""),
        image_id=str(entry.get("ImageID") or ""),
    )


@dataclass(frozen=True)
class Ending:
    """How an instance ended, from ``GET /libpod/containers/{id}/json``."""

    exit_code: int
    oom_killed: bool
    started_at: datetime | None
    finished_at: datetime | None
    error: str = ""


def ending_from_inspect(inspect: JSON) -> Ending:
    state: JSON = inspect.get("State") or {}
    started = podman_time(state.get("StartedAt"))
    finished = podman_time(state.get("FinishedAt"))
    if started and finished and finished < started:  # Podman stamps the end a hair early
        finished = started
    return Ending(
        exit_code=_int(state.get("ExitCode"), 0),
        oom_killed=bool(state.get("OOMKilled")),
        started_at=started,
        finished_at=finished,
        error=str(state.get("Error") or ""),
    )


def with_ending(instance: Instance, ending: Ending) -> Instance:
    return replace(
        instance,
        exit_code=ending.exit_code,
        oom_killed=ending.oom_killed,
        started_at=ending.started_at or instance.started_at,
        finished_at=ending.finished_at or instance.finished_at,
        error=ending.error,
    )


def with_start_error(instance: Instance, message: str, at: datetime) -> Instance:
    """An instance Podman could not start counts as ended, with exit code 128."""
    return replace(
        instance, state="exited", exit_code=START_ERROR_EXIT_CODE, finished_at=at, error=message
    )


@dataclass(frozen=True)
class History:
    """The instances of one pod container, newest first."""

    current: Instance
    previous: Instance | None = None
    older: tuple[Instance, ...] = ()

    @property
    def name(self) -> str:
        return self.current.container


@dataclass(frozen=True)
class PodState:
    """Everything Podman holds for one pod."""

    uid: str
    namespace: str
    name: str
    pod: str
    policy: RestartPolicy
    deadline: int | None
    grace_seconds: int
    expected: int | None
    infra: Instance | None
    init: tuple[History, ...]
    app: tuple[History, ...]

    def history(self, container: str) -> History | None:
        for history in (*self.init, *self.app):
            if history.name == container:
                return history
        return None

    @property
    def complete(self) -> bool:
        """Whether every container of the pod was created (a create may stop half-way)."""
        return self.expected is None or len(self.init) + len(self.app) >= self.expected

    @property
    def instances(self) -> tuple[Instance, ...]:
        found: list[Instance] = []
        for history in (*self.init, *self.app):
            found.append(history.current)
            if history.previous:
                found.append(history.previous)
            found.extend(history.older)
        return tuple(found)


def _histories(instances: Iterable[Instance]) -> tuple[History, ...]:
    by_name: dict[str, list[Instance]] = {}
    for instance in instances:
        by_name.setdefault(instance.container, []).append(instance)
    histories = []
    for runs in by_name.values():
        runs.sort(key=lambda i: i.restart_count, reverse=True)
        previous = runs[1] if len(runs) > 1 else None
        histories.append(History(runs[0], previous, tuple(runs[2:])))
    histories.sort(key=lambda h: (h.current.index, h.name))
    return tuple(histories)


def group(instances: Iterable[Instance]) -> dict[str, PodState]:
    """Instances grouped into pods, keyed by pod UID."""
    by_uid: dict[str, list[Instance]] = {}
    for instance in instances:
        by_uid.setdefault(instance.uid, []).append(instance)
    pods: dict[str, PodState] = {}
    for uid, members in by_uid.items():
        infra = next((i for i in members if i.infra), None)
        first = infra or members[0]
        containers = [i for i in members if not i.infra]
        pods[uid] = PodState(
            uid=uid,
            namespace=first.namespace,
            name=first.name,
            pod=first.pod,
            policy=first.policy,
            deadline=first.deadline,
            grace_seconds=first.grace_seconds,
            expected=first.expected,
            infra=infra,
            init=_histories(i for i in containers if i.init),
            app=_histories(i for i in containers if not i.init),
        )
    return pods


def ip_address(inspect: JSON) -> str:
    """A container's IP address from its inspect answer ("" when it has none)."""
    settings = inspect.get("NetworkSettings") or {}
    address = str(settings.get("IPAddress") or "")
    for network in (settings.get("Networks") or {}).values():
        address = address or str((network or {}).get("IPAddress") or "")
    return address
