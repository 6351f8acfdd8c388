"""What the batch-system benchmarks share (`slurm_pods`, `htcondor_pods`): one pod,
then many at once, through `vkpy run` on the testbed's batch system, over its sshd as
the unprivileged login user, at the default settings.

Measures, with the agent in its own process:

- one pod: apply → Running seen on a watch, next to the batch system's own submit →
  running (the agent's "submitted" log line to the system first showing the job
  running) in the same run;
- many pods: apply → job submitted, from just before each pod is created to the agent's
  log line "submitted as <system> job N" (p50, p99);
- job state change → pod status: the job running, and finished, as the system itself
  shows them (`System.watch_queue`), and the job's own start and exit records, to the
  pod's Running, and Succeeded, phase arriving on a watch (p50, p99);
- what the system's `count_calls` counts (scheduler RPCs), per minute while the pods
  ran, and the agent's own command counters.
"""

from __future__ import annotations

import asyncio
import pwd
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from common import node_ready, pod  # benchmarks/common.py

from vkpy.errors import KubeApiError
from vkpy.kube.client import Kube, connect
from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.testbed import Endpoints

NAMESPACE = "default"
Times = dict[str, float]


@dataclass(frozen=True)
class System:
    """One batch system's part of the benchmark."""

    name: str  # as the agent logs it: "submitted as <name> job N"
    config: str  # the testbed's agent config, under its state directory
    pods: int
    command: list[str]
    # Polls the system itself, as root: when each job of the node (by pod UID) was
    # first seen running, and finished. Arguments: node, login user's home, the two maps.
    watch_queue: Callable[[str, Path, Times, Times], Awaitable[None]]
    counters: Mapping[str, str]  # the agent's /metrics series → the figure's name
    count_calls: Callable[[str], int] | None = None  # login user → scheduler RPCs so far


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def records_written(base: Path, started: Times, exited: Times) -> None:
    """When each pod's job first wrote its container's start, and its exit, record (the
    status file read as root every 0.25 s), by pod UID."""
    while True:
        for status in base.glob("*/status/main"):
            uid = status.parent.parent.name
            if uid in exited:
                continue
            try:
                text = status.read_text()
            except OSError:
                continue
            now = time.time()
            if "start " in text:
                started.setdefault(uid, now)
            if "exit " in text:
                exited.setdefault(uid, now)
        await asyncio.sleep(0.25)


async def phases_seen(kube: Kube, node: str, seen: dict[str, Times]) -> None:
    """When the benchmark first learns each pod's Running, Succeeded or Failed phase, by
    pod UID: from a watch, listing again whenever the watch ends."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    query = {"labelSelector": f"bench={node}"}

    def record(item: dict[str, Any]) -> None:
        phase = (item.get("status") or {}).get("phase")
        if phase in ("Running", "Succeeded", "Failed"):
            seen.setdefault(phase, {}).setdefault(item["metadata"]["uid"], time.time())

    while True:
        listing = await kube.get(path, **query)
        for item in listing["items"]:
            record(item)
        params = {**query, "watch": True, "resourceVersion": listing["metadata"]["resourceVersion"]}
        try:
            async for event in kube.stream(path, query=params, read_timeout=900):
                if event.get("type") in ("ADDED", "MODIFIED"):
                    record(event["object"])
        except KubeApiError as exc:
            print(f"watch ended: {exc}; listing again", file=sys.stderr)


def metrics(port: int, wanted: Mapping[str, str]) -> dict[str, float]:
    """The agent's counters named in ``wanted``, from its plain-HTTP /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key in wanted:
            found[wanted[key]] = float(value)
    return found


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000),
        "max_ms": round(ordered[-1] * 1000),
    }


async def until(
    probe: Any, what: str, timeout: float, watchers: list[asyncio.Task[None]] | None = None
) -> None:
    """Poll ``probe`` until true; fail when it times out or a watcher task died."""
    deadline = time.monotonic() + timeout
    while not await probe():
        for task in watchers or []:
            if task.done():
                task.result()  # raises what ended it
                raise SystemExit(f"benchmark: {task.get_name()} ended early")
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: timed out waiting for {what}")
        await asyncio.sleep(0.2)


def submitted_times(log: Path, system: str) -> Times:
    """When the agent logged each pod submitted, by pod name."""
    pattern = re.compile(
        rf"^(\S+ \S+) INFO .*pod \S+/(\S+) \(uid [^)]*\): submitted as {system} job \S+ in"
    )
    submitted: Times = {}
    for line in log.read_text(errors="replace").splitlines():
        match = pattern.match(line)
        if match:
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            submitted[match[2]] = stamp
    return submitted


@dataclass
class Seen:
    """What the benchmark saw happen, as wall-clock times."""

    job_running: Times  # pod uid → the system first showed its job running
    job_final: Times  # pod uid → the system first showed its job finished
    phases: dict[str, Times]  # phase → pod uid → a watch delivered it
    started: Times = field(default_factory=dict)  # the job wrote "start"
    exited: Times = field(default_factory=dict)  # the job wrote "exit"

    def ended(self) -> int:
        return len(self.phases.get("Succeeded", {})) + len(self.phases.get("Failed", {}))

    def lags(self, uids: list[str]) -> dict[str, Any]:
        running = self.phases.get("Running", {})
        succeeded = self.phases.get("Succeeded", {})

        def lag(seen: Times, since: Times) -> dict[str, float]:
            return summary([seen[u] - since[u] for u in uids if u in seen and u in since])

        return {
            "job_running_to_pod_running_seen": lag(running, self.job_running),
            "start_record_to_pod_running_seen": lag(running, self.started),
            "exit_record_to_pod_succeeded_seen": lag(succeeded, self.exited),
            "job_finished_to_pod_succeeded_seen": lag(succeeded, self.job_final),
        }


async def _true(value: bool) -> bool:
    return value


async def clean_up(kube: Kube, node: str, base: Path) -> None:
    """Delete the pods; wait until the agent has removed them and their work directories."""
    pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    await kube.request("DELETE", pods_path, query={"labelSelector": f"bench={node}"})

    async def gone() -> bool:
        return not (await kube.get(pods_path, labelSelector=f"bench={node}"))["items"]

    await until(gone, "the pods to be deleted", 600)

    async def drained() -> bool:  # the agent removes work directories after API pods
        return not any(base.iterdir())

    await until(drained, "the work directories to be removed", 300)
    base.rmdir()


def closing_line(log: Path) -> str | None:
    """The backend's own count of commands and connections, logged when it closes."""
    lines = [line for line in log.read_text().splitlines() if "connections opened" in line]
    return lines[-1].split(": ", 1)[-1] if lines else None


def start_agent(
    system: System, endpoints: Endpoints, work: Path, node: str, health_port: int
) -> tuple[subprocess.Popen[bytes], Path, dict[str, Any]]:
    """`vkpy run` for ``node`` with the testbed's config for the system: the process,
    its log and the config."""
    config = yaml.safe_load((endpoints.state / system.config).read_text())
    config.update({"state_dir": str(work / "agent"), "log_level": "INFO"})
    config["kubelet_api"].update({"port": 0, "health_port": health_port})
    config_file = work / "agent.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = work / "agent.log"
    argv = [sys.executable, "-m", "vkpy.cli", "run", "--config", str(config_file)]
    with open(log, "wb") as out:
        agent = subprocess.Popen([*argv, "--node-name", node], stdout=out, stderr=subprocess.STDOUT)
    return agent, log, config


async def one_pod(
    system: System,
    apply: Callable[[str], Awaitable[str]],
    *,
    name: str,
    log: Path,
    seen: Seen,
    applied: Times,
    tasks: list[asyncio.Task[None]],
) -> dict[str, int]:
    """One pod alone: apply → Running, next to the system's own submit → running."""
    uid = await apply(name)

    async def running() -> bool:
        return uid in seen.phases.get("Running", {}) and uid in seen.job_running

    await until(running, "the first pod to run", 120, tasks)
    submitted = submitted_times(log, system.name)[name]
    single = {
        "apply_to_pod_running_seen_ms": round((seen.phases["Running"][uid] - applied[name]) * 1000),
        "system_submit_to_running_ms": round((seen.job_running[uid] - submitted) * 1000),
        "apply_to_job_submitted_ms": round((submitted - applied[name]) * 1000),
    }
    single["gap_over_system_ms"] = (
        single["apply_to_pod_running_seen_ms"] - single["system_submit_to_running_ms"]
    )
    await until(lambda: _true(seen.ended() >= 1), "the first pod to end", 120, tasks)
    return single


async def bench(system: System, endpoints: Endpoints, work: Path) -> dict[str, Any]:
    prepare_login_user(endpoints.ssh.user)  # the jobs run containers with it
    node = f"bench-{system.name.lower()}-{uuid.uuid4().hex[:6]}"
    health_port = free_port()
    agent, log, config = start_agent(system, endpoints, work, node, health_port)
    kube = Kube(await connect(None))
    seen = Seen({}, {}, {})
    tasks: list[asyncio.Task[None]] = []
    pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    applied: Times = {}
    user = endpoints.ssh.user

    async def apply(name: str) -> str:
        applied[name] = time.time()
        created = await kube.create(pods_path, pod(node, name, system.command))
        return str(created["metadata"]["uid"])

    def calls() -> int:
        return system.count_calls(user) if system.count_calls else 0

    try:
        await until(lambda: node_ready(kube, node), "the node to be Ready", 60)
        home = Path(pwd.getpwnam(user).pw_dir)
        base = home / config["backend"]["work_dir"] / node
        tasks = [
            asyncio.create_task(system.watch_queue(node, home, seen.job_running, seen.job_final)),
            asyncio.create_task(phases_seen(kube, node, seen.phases)),
            asyncio.create_task(records_written(base, seen.started, seen.exited)),
        ]
        await asyncio.sleep(0.5)  # the watch is open

        single = await one_pod(
            system, apply, name=f"{node}-one", log=log, seen=seen, applied=applied, tasks=tasks
        )

        # Many pods at once.
        began = time.monotonic()
        names = [f"{node}-{i}" for i in range(system.pods)]
        uids = list(await asyncio.gather(*(apply(n) for n in names)))
        applied_in = time.monotonic() - began

        async def all_submitted() -> bool:
            return len(submitted_times(log, system.name)) >= system.pods + 1

        await until(all_submitted, "every pod to be submitted", 900, tasks)
        calls_at_submitted, submitted_at = calls(), time.monotonic()
        await until(lambda: _true(seen.ended() >= system.pods + 1), "every pod to end", 3600, tasks)
        calls_at_end, ended_at = calls(), time.monotonic()
        all_ended = ended_at - began
        counters = metrics(health_port, system.counters)
        await clean_up(kube, node, base)
    finally:
        for task in tasks:
            task.cancel()
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        await kube.request("DELETE", f"/api/v1/nodes/{node}")
        await kube.close()

    submitted_at_times = submitted_times(log, system.name)
    running_minutes = (ended_at - submitted_at) / 60
    figures: dict[str, Any] = {
        "one_pod": single,
        "pods": system.pods,
        "command": system.command,
        "pods_failed": len(seen.phases.get("Failed", {})),
        "create_requests_s": round(applied_in, 2),
        "all_pods_ended_s": round(all_ended, 1),
        "jobs_submitted": len(submitted_at_times) - 1,
        "apply_to_job_submitted": summary(
            [submitted_at_times[n] - applied[n] for n in names if n in submitted_at_times]
        ),
        **seen.lags(uids),
        "running_window_minutes": round(running_minutes, 1),
        **counters,
        "agent_closing_line": closing_line(log),
    }
    if system.count_calls:
        figures["scheduler_rpcs_by_login_user_per_minute_while_running"] = round(
            (calls_at_end - calls_at_submitted) / running_minutes, 1
        )
    return figures
