"""`make bench` (Slurm part): one pod, then many at once (``BENCH_SLURM_PODS``, 1000 by
default), through `vkpy run` on the testbed's Slurm, over its sshd as the unprivileged
login user, at the default settings.

Measures, with the agent in its own process:

- one pod: apply → Running seen on a watch, next to Slurm's own sbatch → RUNNING (the
  agent's "submitted" log line to squeue first showing the job RUNNING) in the same run;
- many pods: apply → job submitted, from just before each pod is created to the agent's
  log line "submitted as Slurm job N" (p50, p99);
- job state change → pod status: the job turning RUNNING, and finished, as Slurm's own
  `squeue` shows them (polled every 0.2 s, as root), to the pod's Running, and
  Succeeded, phase arriving on a watch (p50, p99);
- slurmctld RPCs the login user caused, from `sdiag`'s per-user counts: per minute
  while the pods ran (after the last submission, until the last pod ended), and in all;
- the agent's squeue and sacct calls, and the SSH connections it opened.
"""

from __future__ import annotations

import asyncio
import os
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from common import node_ready, pod, run  # benchmarks/common.py

from vkpy.errors import KubeApiError
from vkpy.kube.client import Kube, connect
from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.testbed import Endpoints

PODS = int(os.environ.get("BENCH_SLURM_PODS", "1000"))
COMMAND = ["sh", "-c", os.environ.get("BENCH_SLURM_COMMAND", "true; sleep 30")]
NAMESPACE = "default"
SUBMITTED = re.compile(
    r"^(\S+ \S+) INFO .*pod \S+/(\S+) \(uid [^)]*\): submitted as Slurm job \d+ in (\d+) ms"
)
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def slurm_states(node: str, running: dict[str, float], final: dict[str, float]) -> None:
    """When Slurm first shows each of the node's jobs RUNNING, and finished, by pod UID."""
    prefix = f"vkpy_{node}_"
    while True:
        process = await asyncio.create_subprocess_exec(
            "squeue",
            "-h",
            "-t",
            "all",
            "-o",
            "%j %T",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await process.communicate()
        now = time.time()
        for line in out.decode().splitlines():
            name, _, state = line.partition(" ")
            if name.startswith(prefix):
                uid = name[len(prefix) :]
                if state == "RUNNING":
                    running.setdefault(uid, now)
                elif state in FINAL:
                    running.setdefault(uid, now)
                    final.setdefault(uid, now)
        await asyncio.sleep(0.2)


async def records_written(base: Path, started: dict[str, float], exited: dict[str, float]) -> None:
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


async def phases_seen(kube: Kube, node: str, seen: dict[str, dict[str, float]]) -> None:
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


def metrics(port: int) -> dict[str, float]:
    """The agent's counters this benchmark reads, from its plain-HTTP /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    wanted = {
        'vkpy_backend_calls_total{operation="list"}': "lists",
        'vkpy_runner_commands_total{command="squeue"}': "squeue",
        'vkpy_runner_commands_total{command="sacct"}': "sacct",
        "vkpy_ssh_connections_opened_total": "ssh_connections",
    }
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


USER_RPC = re.compile(r"^\s*(\S+)\s+\(\s*(\d+)\)\s+count:(\d+)")


def rpcs_by_user(sdiag: str) -> dict[str, int]:
    """`sdiag`'s "Remote Procedure Call statistics by user" section, as counts."""
    counts: dict[str, int] = {}
    section = False
    for line in sdiag.splitlines():
        if line.startswith("Remote Procedure Call statistics"):
            section = "by user" in line
            continue
        match = USER_RPC.match(line) if section else None
        if match:
            counts[match[1]] = int(match[3])
    return counts


def user_rpcs(user: str) -> int:
    done = subprocess.run(["sdiag"], capture_output=True, text=True, check=True)
    return rpcs_by_user(done.stdout).get(user, 0)


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


def submitted_times(log: Path) -> dict[str, float]:
    """When the agent logged each pod submitted, by pod name."""
    submitted: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = SUBMITTED.match(line)
        if match:
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            submitted[match[2]] = stamp
    return submitted


@dataclass
class Seen:
    """What the benchmark saw happen, as wall-clock times."""

    slurm_running: dict[str, float]  # pod uid → squeue first showed its job RUNNING
    slurm_final: dict[str, float]  # pod uid → squeue first showed its job finished
    phases: dict[str, dict[str, float]]  # phase → pod uid → a watch delivered it
    started: dict[str, float] = field(default_factory=dict)  # the job wrote "start"
    exited: dict[str, float] = field(default_factory=dict)  # the job wrote "exit"

    def ended(self) -> int:
        return len(self.phases.get("Succeeded", {})) + len(self.phases.get("Failed", {}))

    def lags(self, uids: list[str]) -> dict[str, Any]:
        running = self.phases.get("Running", {})
        succeeded = self.phases.get("Succeeded", {})
        return {
            "job_running_to_pod_running_seen": summary(
                [
                    running[u] - self.slurm_running[u]
                    for u in uids
                    if u in running and u in self.slurm_running
                ]
            ),
            "start_record_to_pod_running_seen": summary(
                [running[u] - self.started[u] for u in uids if u in running and u in self.started]
            ),
            "exit_record_to_pod_succeeded_seen": summary(
                [succeeded[u] - self.exited[u] for u in uids if u in succeeded and u in self.exited]
            ),
            "job_finished_to_pod_succeeded_seen": summary(
                [
                    succeeded[u] - self.slurm_final[u]
                    for u in uids
                    if u in succeeded and u in self.slurm_final
                ]
            ),
        }


async def one_pod(
    apply: Callable[[str], Awaitable[str]],
    *,
    name: str,
    log: Path,
    seen: Seen,
    applied: dict[str, float],
    tasks: list[asyncio.Task[None]],
) -> dict[str, int]:
    """One pod alone: apply → Running, next to Slurm's own sbatch → RUNNING."""
    uid = await apply(name)

    async def running() -> bool:
        return uid in seen.phases.get("Running", {}) and uid in seen.slurm_running

    await until(running, "the first pod to run", 120, tasks)
    submitted = submitted_times(log)[name]
    single = {
        "apply_to_pod_running_seen_ms": round((seen.phases["Running"][uid] - applied[name]) * 1000),
        "slurm_sbatch_to_running_ms": round((seen.slurm_running[uid] - submitted) * 1000),
        "apply_to_job_submitted_ms": round((submitted - applied[name]) * 1000),
    }
    single["gap_over_slurm_ms"] = (
        single["apply_to_pod_running_seen_ms"] - single["slurm_sbatch_to_running_ms"]
    )
    await until(lambda: _true(seen.ended() >= 1), "the first pod to end", 120, tasks)
    return single


async def bench(endpoints: Endpoints, work: Path) -> dict[str, Any]:
    prepare_login_user(endpoints.ssh.user)  # Slurm jobs run containers with it
    node = f"bench-slurm-{uuid.uuid4().hex[:6]}"
    health_port = free_port()
    config = yaml.safe_load((endpoints.state / "slurm.yaml").read_text())
    config.update({"state_dir": str(work / "agent"), "log_level": "INFO"})
    config["kubelet_api"].update({"port": 0, "health_port": health_port})
    config_file = work / "agent.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = work / "agent.log"
    argv = [sys.executable, "-m", "vkpy.cli", "run", "--config", str(config_file)]
    with open(log, "wb") as out:
        agent = subprocess.Popen([*argv, "--node-name", node], stdout=out, stderr=subprocess.STDOUT)
    kube = Kube(await connect(None))
    seen = Seen({}, {}, {})
    tasks: list[asyncio.Task[None]] = []
    pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    applied: dict[str, float] = {}

    async def apply(name: str) -> str:
        applied[name] = time.time()
        created = await kube.create(pods_path, pod(node, name, COMMAND))
        return str(created["metadata"]["uid"])

    try:
        await until(lambda: node_ready(kube, node), "the node to be Ready", 60)
        home = Path(pwd.getpwnam(endpoints.ssh.user).pw_dir)
        base = home / config["backend"]["work_dir"] / node
        tasks = [
            asyncio.create_task(slurm_states(node, seen.slurm_running, seen.slurm_final)),
            asyncio.create_task(phases_seen(kube, node, seen.phases)),
            asyncio.create_task(records_written(base, seen.started, seen.exited)),
        ]
        await asyncio.sleep(0.5)  # the watch is open

        single = await one_pod(
            apply, name=f"{node}-one", log=log, seen=seen, applied=applied, tasks=tasks
        )

        # Many pods at once.
        user = endpoints.ssh.user
        began = time.monotonic()
        names = [f"{node}-{i}" for i in range(PODS)]
        uids = list(await asyncio.gather(*(apply(n) for n in names)))
        applied_in = time.monotonic() - began

        async def all_submitted() -> bool:
            return len(submitted_times(log)) >= PODS + 1

        await until(all_submitted, "every pod to be submitted", 600, tasks)
        rpcs_at_submitted, submitted_at = user_rpcs(user), time.monotonic()
        await until(lambda: _true(seen.ended() >= PODS + 1), "every pod to end", 3600, tasks)
        rpcs_at_end, ended_at = user_rpcs(user), time.monotonic()
        all_ended = ended_at - began
        counters = metrics(health_port)
        await clean_up(kube, node, base)
    finally:
        for task in tasks:
            task.cancel()
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        await kube.request("DELETE", f"/api/v1/nodes/{node}")
        await kube.close()

    submitted = submitted_times(log)
    running_minutes = (ended_at - submitted_at) / 60
    return {
        "one_pod": single,
        "pods": PODS,
        "command": COMMAND,
        "pods_failed": len(seen.phases.get("Failed", {})),
        "create_requests_s": round(applied_in, 2),
        "all_pods_ended_s": round(all_ended, 1),
        "jobs_submitted": len(submitted) - 1,
        "apply_to_job_submitted": summary(
            [submitted[n] - applied[n] for n in names if n in submitted]
        ),
        **seen.lags(uids),
        "slurmctld_rpcs_by_login_user_per_minute_while_running": round(
            (rpcs_at_end - rpcs_at_submitted) / running_minutes, 1
        ),
        "running_window_minutes": round(running_minutes, 1),
        "agent_squeue_calls": counters.get("squeue"),
        "agent_sacct_calls": counters.get("sacct", 0),
        "agent_status_reads": counters.get("lists"),
        "ssh_connections_opened": counters.get("ssh_connections"),
        "agent_closing_line": closing_line(log),
    }


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


async def _true(value: bool) -> bool:
    return value


def closing_line(log: Path) -> str | None:
    """The backend's own count of commands and connections, logged when it closes."""
    lines = [line for line in log.read_text().splitlines() if "connections opened" in line]
    return lines[-1].split(": ", 1)[-1] if lines else None


if __name__ == "__main__":
    run("slurm", bench)
