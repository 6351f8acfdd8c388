"""What the job script writes to a pod's ``status/``, read back. Pure functions.

The job script appends one line per event to ``status/<container>``::

    start <epoch> <run>          a run of the container began
    exit <code> <epoch> <run>    it ended with exit code <code> (128+N: signal N)
    image <id>                   the ID of its image, just before a run began
    wait <epoch>                 it waits out its restart back-off until <epoch>

and to ``status/_job``: ``begin <epoch> <host> <job id> <ip>``, ``stop <epoch> <why>``
(why: ``signal`` when the batch system or delete() stopped it, ``deadline`` for
activeDeadlineSeconds) and ``end <code> <epoch>``. vkpy writes ``status/_pod`` (the
pod's identity and containers, JSON) and ``status/_jobid`` at submission.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from vkpy.backends.batch import naming
from vkpy.backends.batch.naming import Layout


@dataclass(frozen=True)
class PodMeta:
    """The pod as vkpy submitted it (``status/_pod``)."""

    namespace: str
    name: str
    init: tuple[str, ...]
    containers: tuple[str, ...]
    images: Mapping[str, str] = field(default_factory=dict, hash=False)
    restart_policy: str = "Never"
    reports_ip: bool = True
    stamped_logs: bool = False  # its log lines carry stamps (`template`); older pods' do not

    def to_json(self) -> str:
        return json.dumps(
            {
                "namespace": self.namespace,
                "name": self.name,
                "init": list(self.init),
                "containers": list(self.containers),
                "images": dict(self.images),
                "restart_policy": self.restart_policy,
                "reports_ip": self.reports_ip,
                "stamped_logs": self.stamped_logs,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> PodMeta | None:
        try:
            data = json.loads(text)
            return cls(
                namespace=str(data["namespace"]),
                name=str(data["name"]),
                init=tuple(str(c) for c in data["init"]),
                containers=tuple(str(c) for c in data["containers"]),
                images={str(k): str(v) for k, v in data.get("images", {}).items()},
                restart_policy=str(data.get("restart_policy", "Never")),
                reports_ip=bool(data.get("reports_ip", True)),
                stamped_logs=bool(data.get("stamped_logs", False)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass
class PodFiles:
    """Everything under one pod's ``status/``, as lines."""

    meta: PodMeta | None = None
    job_id: str = ""
    job: list[str] = field(default_factory=list)
    containers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    events: list[str] = field(default_factory=list)  # the batch system's event log


def parse_status_lines(output: str, layout: Layout) -> dict[str, PodFiles]:
    """``grep -H '' status/*`` output (``path:line``) → the files of each pod, by UID."""
    grouped = status_lines(output.splitlines(), layout)
    return {uid: pod_files(files) for uid, files in grouped.items()}


def status_lines(lines: Iterable[str], layout: Layout) -> dict[str, dict[str, list[str]]]:
    """``path:line`` lines → each pod's status files (name → lines), by UID; other
    lines are skipped."""
    by_pod: dict[str, dict[str, list[str]]] = {}
    for line in lines:
        path, colon, content = line.partition(":")
        where = layout.uid_of_status_file(path) if colon else None
        if where is not None:
            by_pod.setdefault(where[0], {}).setdefault(where[1], []).append(content)
    return by_pod


def pod_files(files: Mapping[str, list[str]]) -> PodFiles:
    """One pod's status files (name → lines) → what they say."""
    found = PodFiles()
    for name, lines in files.items():
        if name == naming.META:
            for line in lines:
                found.meta = PodMeta.from_json(line) or found.meta
        elif name == naming.JOB_ID:
            for line in lines:
                found.job_id = line.strip().split(";")[0] or found.job_id
        elif name == naming.JOB:
            found.job.extend(lines)
        elif name == naming.EVENTS:
            found.events.extend(lines)
        elif not name.startswith("_"):
            found.containers[name].extend(lines)
    return found


# ---------------------------------------------------------------- parsed events


@dataclass(frozen=True)
class Run:
    number: int
    started: datetime
    exit_code: int | None = None
    finished: datetime | None = None


@dataclass(frozen=True)
class History:
    runs: tuple[Run, ...]
    backoff_until: datetime | None = None  # set while waiting to restart
    image_id: str = ""  # the image's, as the runtime said before the last run


@dataclass(frozen=True)
class JobEvents:
    began: datetime | None = None
    host: str = ""
    ip: str = ""
    stopped: datetime | None = None
    stop_why: str = ""
    ended: datetime | None = None
    exit_code: int | None = None


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(text), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def history(lines: Iterable[str]) -> History:
    runs: list[Run] = []
    backoff: datetime | None = None
    image_id = ""
    for line in lines:
        words = line.split()
        if len(words) == 2 and words[0] == "image":
            image_id = words[1]
        elif len(words) >= 3 and words[0] == "start":
            started, number = _time(words[1]), _int(words[2])
            if started is not None and number is not None:
                runs.append(Run(number, started))
                backoff = None
        elif len(words) >= 4 and words[0] == "exit" and runs and runs[-1].exit_code is None:
            code, finished = _int(words[1]), _time(words[2])
            if code is not None:
                last = runs[-1]
                runs[-1] = Run(last.number, last.started, code, finished)
        elif len(words) >= 2 and words[0] == "wait":
            backoff = _time(words[1])
    return History(tuple(runs), backoff, image_id)


def job_events(lines: Iterable[str]) -> JobEvents:
    events = JobEvents()
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "begin":
            # A requeued job begins again: what happened before is history.
            events = JobEvents(
                began=_time(words[1]),
                host=words[2] if len(words) > 2 else "",
                ip=words[4] if len(words) > 4 and words[4] != "-" else "",
            )
        elif len(words) >= 3 and words[0] == "stop" and events.stopped is None:
            events = replace(events, stopped=_time(words[1]), stop_why=words[2])
        elif len(words) >= 3 and words[0] == "end":
            events = replace(events, ended=_time(words[2]), exit_code=_int(words[1]))
    return events


def begins(job_lines: Iterable[str]) -> int:
    """How many times the job began (more than once: requeued)."""
    return sum(1 for line in job_lines if line.startswith("begin "))


def ended_well(files: PodFiles) -> bool:
    """Whether the script ended on its own (not stopped) after every container's last
    run exited 0: nothing the batch system could add would change the pod's record."""
    events = job_events(files.job)
    if files.meta is None or events.ended is None or events.stopped is not None:
        return False
    for name in (*files.meta.init, *files.meta.containers):
        runs = history(files.containers.get(name, [])).runs
        if not runs or runs[-1].exit_code != 0:
            return False
    return True
