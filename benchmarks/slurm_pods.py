"""`make bench` (Slurm part): 100 pods at once through `vkpy run` on the testbed's Slurm,
over its sshd as the unprivileged login user.

Measures, with the agent in its own process:

- apply → job submitted: from just before each pod is created to the agent's log line
  "submitted as Slurm job N" (and the agent's own staging + sbatch time in that line);
- job state change → pod status: the job turning RUNNING, and the job leaving the queue
  as COMPLETED, as Slurm's own `squeue` shows them (polled every 0.2 s, as root), to the
  pod's Running, and Succeeded, phase arriving on a watch;
- squeue calls per status tick (`vkpy_runner_commands_total{command="squeue"}` over
  `vkpy_backend_calls_total{operation="list"}` on the agent's /metrics: each tick is one
  list), and the SSH connections the agent opened over the whole run.
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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from common import node_ready, pod, run  # benchmarks/common.py

from vkpy.errors import KubeApiError
from vkpy.kube.client import Kube, connect
from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.testbed import Endpoints

PODS = int(os.environ.get("BENCH_SLURM_PODS", "100"))
POLL_SECONDS = float(os.environ.get("BENCH_SLURM_POLL_SECONDS", "1"))
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
    return {
        "median_ms": round(statistics.median(ordered) * 1000),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000),
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


async def bench(endpoints: Endpoints, work: Path) -> dict[str, Any]:
    prepare_login_user(endpoints.ssh.user)  # Slurm jobs run containers with it
    node = f"bench-slurm-{uuid.uuid4().hex[:6]}"
    health_port = free_port()
    config = yaml.safe_load((endpoints.state / "slurm.yaml").read_text())
    config.update(
        {"state_dir": str(work / "agent"), "log_level": "INFO", "status_poll_seconds": POLL_SECONDS}
    )
    config["kubelet_api"].update({"port": 0, "health_port": health_port})
    config_file = work / "agent.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = work / "agent.log"
    argv = [sys.executable, "-m", "vkpy.cli", "run", "--config", str(config_file)]
    with open(log, "wb") as out:
        agent = subprocess.Popen([*argv, "--node-name", node], stdout=out, stderr=subprocess.STDOUT)
    kube = Kube(await connect(None))
    slurm_running: dict[str, float] = {}
    slurm_final: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {}
    tasks: list[asyncio.Task[None]] = []
    pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    try:
        await until(lambda: node_ready(kube, node), "the node to be Ready", 60)
        tasks = [
            asyncio.create_task(slurm_states(node, slurm_running, slurm_final)),
            asyncio.create_task(phases_seen(kube, node, seen)),
        ]
        await asyncio.sleep(0.5)  # the watch is open
        applied: dict[str, float] = {}

        async def apply(name: str) -> str:
            applied[name] = time.time()
            created = await kube.create(pods_path, pod(node, name, ["sleep", "5"]))
            return str(created["metadata"]["uid"])

        began = time.monotonic()
        uids = await asyncio.gather(*(apply(f"{node}-{i}") for i in range(PODS)))
        applied_in = time.monotonic() - began

        async def all_done() -> bool:
            return len(seen.get("Succeeded", {})) + len(seen.get("Failed", {})) >= PODS

        await until(all_done, "every pod to end", 900, tasks)
        all_ended = time.monotonic() - began
        await asyncio.sleep(2 * POLL_SECONDS)  # a few ticks with every pod finished
        counters = metrics(health_port)
        await kube.request("DELETE", pods_path, query={"labelSelector": f"bench={node}"})

        async def gone() -> bool:
            return not (await kube.get(pods_path, labelSelector=f"bench={node}"))["items"]

        await until(gone, "the pods to be deleted", 300)
        base = Path(pwd.getpwnam(endpoints.ssh.user).pw_dir) / config["backend"]["work_dir"] / node

        async def drained() -> bool:  # the agent removes work directories after API pods
            return not any(base.iterdir())

        await until(drained, "the work directories to be removed", 120)
        base.rmdir()
    finally:
        for task in tasks:
            task.cancel()
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        await kube.request("DELETE", f"/api/v1/nodes/{node}")
        await kube.close()

    timings = Timings(applied, uids, slurm_running, slurm_final, seen)
    return {
        "pods": PODS,
        "status_poll_seconds": POLL_SECONDS,
        "pods_failed": len(seen.get("Failed", {})),
        "create_requests_s": round(applied_in, 2),
        "all_pods_ended_s": round(all_ended, 1),
        **timings.report(log),
        "status_ticks": counters.get("lists"),
        "squeue_calls": counters.get("squeue"),
        "squeue_calls_per_tick": round(counters["squeue"] / counters["lists"], 3),
        "sacct_calls": counters.get("sacct", 0),
        "ssh_connections_opened": counters.get("ssh_connections"),
        "agent_closing_line": closing_line(log),
    }


@dataclass(frozen=True)
class Timings:
    """What the benchmark saw happen, as wall-clock times."""

    applied: dict[str, float]  # pod name → just before its create request
    uids: list[str]
    slurm_running: dict[str, float]  # pod uid → squeue first showed its job RUNNING
    slurm_final: dict[str, float]  # pod uid → squeue first showed its job finished
    seen: dict[str, dict[str, float]]  # phase → pod uid → a watch delivered it

    def report(self, log: Path) -> dict[str, Any]:
        submitted: dict[str, float] = {}
        staging_sbatch_ms = []
        for line in log.read_text(errors="replace").splitlines():
            match = SUBMITTED.match(line)
            if match:
                stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                submitted[match[2]] = stamp
                staging_sbatch_ms.append(int(match[3]))
        running = self.seen.get("Running", {})
        succeeded = self.seen.get("Succeeded", {})
        return {
            "jobs_submitted": len(submitted),
            "apply_to_job_submitted": summary([submitted[n] - self.applied[n] for n in submitted]),
            "agent_staging_plus_sbatch_median_ms": statistics.median(staging_sbatch_ms),
            "job_running_to_pod_running_seen": summary(
                [
                    running[u] - self.slurm_running[u]
                    for u in self.uids
                    if u in running and u in self.slurm_running
                ]
            ),
            "job_finished_to_pod_succeeded_seen": summary(
                [
                    succeeded[u] - self.slurm_final[u]
                    for u in self.uids
                    if u in succeeded and u in self.slurm_final
                ]
            ),
        }


def closing_line(log: Path) -> str | None:
    """The backend's own count of commands and connections, logged when it closes."""
    lines = [line for line in log.read_text().splitlines() if "connections opened" in line]
    return lines[-1].split(": ", 1)[-1] if lines else None


if __name__ == "__main__":
    run("slurm", bench)
