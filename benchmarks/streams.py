"""`make bench` (streaming part): kubectl exec and port-forward into pods on the
testbed's Podman and Slurm nodes, through the real apiserver.

Measures, with the agent in its own process, for both ways the apiserver reaches the
kubelet API (WebSocket passed through, the node declaring ExtendWebSocketsToKubelet;
SPDY, it not declaring it):

- exec round trip: p50 and p99 of `kubectl exec POD -- true`, beside the backend's own
  way in measured in the same run: `podman exec CONTAINER true` on Podman; on Slurm,
  `srun --jobid=J --overlap true` and the whole path vkpy takes (ssh to the login node,
  srun --overlap, podman exec) run by hand;
- port-forward: MiB/s of one 100 MiB HTTP download through `kubectl port-forward`, and
  the agent's CPU seconds (user + system, from /proc) per MiB forwarded.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml
from common import node_ready, pod, run  # benchmarks/common.py

from vkpy.kube.client import Kube, connect
from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.testbed import Endpoints

ROUNDS = int(os.environ.get("BENCH_EXEC_ROUNDS", "30"))
MIB = 1024 * 1024
TRANSFER_MIB = int(os.environ.get("BENCH_FORWARD_MIB", "100"))
NAMESPACE = "default"
HTTP_PORT = 18080


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p99_ms": round(p99 * 1000, 1)}


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {done.stderr.decode(errors='replace')[-300:]}")
    return elapsed


def rounds(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    timed(argv, env)  # warm: caches, connections
    return summary([timed(argv, env) for _ in range(ROUNDS)])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def forward_throughput(env: dict[str, str], pod_name: str, agent_pid: int) -> dict[str, float]:
    forward = subprocess.Popen(
        ["kubectl", "port-forward", f"pod/{pod_name}", f":{HTTP_PORT}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = forward.stdout.readline() if forward.stdout is not None else ""
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if found is None:
            raise RuntimeError("kubectl port-forward did not start")
        url = f"http://127.0.0.1:{found.group(1)}/big"
        cpu_before = cpu_seconds(agent_pid)
        began = time.perf_counter()
        size = 0
        with urllib.request.urlopen(url, timeout=120) as response:
            while chunk := response.read(MIB):
                size += len(chunk)
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(agent_pid) - cpu_before
    finally:
        forward.terminate()
        forward.wait(10)
    if size != TRANSFER_MIB * MIB:
        raise RuntimeError(f"forwarded {size} bytes, not {TRANSFER_MIB} MiB")
    return {
        "mib_per_s": round(TRANSFER_MIB / elapsed, 1),
        "agent_cpu_ms_per_mib": round(cpu * 1000 / TRANSFER_MIB, 2),
    }


def server_pod(node: str, name: str) -> dict[str, Any]:
    script = (
        f"mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/big bs=1M count={TRANSFER_MIB} "
        f"2>/dev/null && httpd -p {HTTP_PORT} -h /tmp/www && exec sleep 3600"
    )
    return pod(node, name, ["sh", "-c", script])


def native_podman(endpoints: Endpoints, uid: str) -> dict[str, Any]:
    env = {**os.environ, "CONTAINERS_CONF": str(endpoints.podman.containers_conf)}
    names = subprocess.run(
        ["podman", "ps", "--format", "{{.Names}}"], env=env, capture_output=True, text=True
    ).stdout.split()
    container = next(n for n in names if f"-{uid[:8]}-main-" in n)
    return {"podman exec true": rounds(["podman", "exec", container, "true"], env)}


def native_slurm(endpoints: Endpoints, node: str, uid: str) -> dict[str, Any]:
    ssh = endpoints.ssh
    login = [
        "ssh", "-q", "-i", str(ssh.client_key), "-p", str(ssh.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        f"{ssh.user}@{ssh.host}",
    ]  # fmt: skip
    jobs = subprocess.run(
        [*login, "squeue -h -o '%i %j'"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    job = next(line.split()[0] for line in jobs if uid in line)
    srun = ["srun", f"--jobid={job}", "--overlap", "--quiet"]
    names = subprocess.run(
        [*login, "podman", "ps", "--format", "{{.Names}}"], capture_output=True, text=True
    ).stdout.split()
    container = next(n for n in names if uid[:8] in n)
    return {
        "srun --overlap true": rounds([*login, *srun, "true"]),
        "ssh + srun --overlap + podman exec true": rounds(
            [*login, *srun, "podman", "exec", container, "true"]
        ),
    }


async def measure(endpoints: Endpoints, work: Path, kind: str, websockets: bool) -> dict[str, Any]:
    node = f"bench-st-{kind[:3]}-{uuid.uuid4().hex[:5]}"
    config = yaml.safe_load((endpoints.state / f"{kind}.yaml").read_text())
    config["state_dir"] = str(work / node)
    config["kubelet_api"].update({"port": 0, "health_port": 0, "websocket_streaming": websockets})
    if kind == "podman":
        config["backend"]["state_dir"] = str(work / node / "podman")
    config_file = work / f"{node}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "vkpy.cli", "run", "--config", str(config_file)]
    with open(work / f"{node}.log", "wb") as log:
        agent = subprocess.Popen([*argv, "--node-name", node], stdout=log, stderr=subprocess.STDOUT)
    kube = Kube(await connect(None))
    env = {**os.environ, "KUBECONFIG": str(endpoints.cluster.admin_kubeconfig)}
    name = f"{node}-server"
    try:
        await until_true(lambda: node_ready(kube, node), 60)
        created = await kube.create(f"/api/v1/namespaces/{NAMESPACE}/pods", server_pod(node, name))
        uid = str(created["metadata"]["uid"])

        async def serving() -> bool:
            done = await asyncio.to_thread(
                subprocess.run,
                ["kubectl", "exec", name, "--", "test", "-f", "/tmp/www/big"],  # noqa: S108 (in the pod)
                env=env,
                capture_output=True,
            )
            return done.returncode == 0

        await until_true(serving, 120)
        await asyncio.sleep(1)
        figures: dict[str, Any] = {
            "path": "websocket passthrough" if websockets else "spdy",
            "kubectl exec true": rounds(["kubectl", "exec", name, "--", "true"], env),
            "port-forward": forward_throughput(env, name, agent.pid),
        }
        native = (
            native_podman(endpoints, uid)
            if kind == "podman"
            else native_slurm(endpoints, node, uid)
        )
        figures["native"] = native
        baseline = list(native.values())[-1]["p50_ms"]
        figures["exec p50 / native p50"] = round(
            figures["kubectl exec true"]["p50_ms"] / baseline, 2
        )
        return figures
    finally:
        await kube.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listing = await kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={node}")
            if not listing["items"]:
                break
            await asyncio.sleep(0.5)
        agent.terminate()
        agent.wait(30)
        await kube.request("DELETE", f"/api/v1/nodes/{node}")
        await kube.close()


async def until_true(probe: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.5)


async def bench(endpoints: Endpoints, work: Path) -> dict[str, Any]:
    prepare_login_user(endpoints.ssh.user)
    results: dict[str, Any] = {}
    for kind in os.environ.get("BENCH_STREAM_BACKENDS", "podman,slurm").split(","):
        for websockets in (True, False):
            key = f"{kind} ({'websocket' if websockets else 'spdy'})"
            results[key] = await measure(endpoints, work, kind, websockets)
    return results


if __name__ == "__main__":
    run("streams", bench)
