"""`make bench`: how fast one agent takes 1,000 pods from bound to Running.

The control plane is the real testbed (apiserver, scheduler and controller-manager
on these same 2 cores); the backend is the in-process instant one, so the figures
measure the agent and the API server alone. Reported: pods/s from the first pod bound
to the last one Running, p50/p99 bound-to-Running latency, API writes per pod until
Running (events aside), all API requests per pod lifecycle, and the agent's peak RSS
and CPU seconds. Pods are watched from this process; the agent is its own process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from common import node_ready  # benchmarks/common.py

from vkpy.kube.client import Kube, connect
from vkpy.testing.testbed import Testbed

PODS = int(os.environ.get("BENCH_PODS", "1000"))
NAMESPACE = "default"
WRITES = ("patch pods/status", "update pods/status")


def pod(node: str, run: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{run}-{index}", "labels": {"bench": run}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [{"name": "main", "image": "busybox"}],
            "restartPolicy": "Never",
        },
    }


class Observer:
    """Watches the benchmark's pods and notes when each was bound and Running."""

    def __init__(self) -> None:
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}

    async def follow(self, kube: Kube, run: str) -> None:
        query = {"labelSelector": f"bench={run}"}
        listing = await kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods", **query)
        version = listing["metadata"]["resourceVersion"]
        params = {**query, "watch": True, "resourceVersion": version, "allowWatchBookmarks": True}
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        async for event in kube.stream(path, query=params, read_timeout=600):
            obj = event["object"]
            name, now = obj["metadata"].get("name"), time.monotonic()
            if obj.get("spec", {}).get("nodeName"):
                self.bound.setdefault(name, now)
            if (obj.get("status") or {}).get("phase") == "Running":
                self.running.setdefault(name, now)


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def bench(state: Path) -> dict[str, Any]:
    run = f"bench-{uuid.uuid4().hex[:6]}"
    node = run
    kube = Kube(await connect(None))
    stats_file = state / f"{run}-agent.json"
    agent = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("instant_agent.py")), node, str(stats_file)]
    )
    try:
        ready = False
        for _ in range(300):
            if ready := await node_ready(kube, node):
                break
            await asyncio.sleep(0.1)
        if not ready:
            raise SystemExit("bench: the agent's node never became Ready")
        observer = Observer()
        watcher = asyncio.create_task(observer.follow(kube, run))
        await asyncio.sleep(0.5)
        gate = asyncio.Semaphore(32)

        async def create(index: int) -> None:
            async with gate:
                await kube.create(f"/api/v1/namespaces/{NAMESPACE}/pods", pod(node, run, index))

        began = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(PODS)))
        created = time.monotonic() - began

        def all_running() -> bool:
            if watcher.done():
                watcher.result()  # raises what ended the watch
                raise SystemExit("bench: the pod watch ended early")
            return len(observer.running) >= PODS

        await wait_for(all_running, 600, "all pods Running")
        at_running = json.loads(stats_file.read_text())
        deleted_at = time.monotonic()
        await kube.request(
            "DELETE",
            f"/api/v1/namespaces/{NAMESPACE}/pods",
            query={"labelSelector": f"bench={run}"},
        )

        async def remaining() -> int:
            listing = await kube.get(
                f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=f"bench={run}"
            )
            return len(listing["items"])

        while await remaining():
            await asyncio.sleep(0.5)
        deletion = time.monotonic() - deleted_at
        watcher.cancel()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        await kube.request("DELETE", f"/api/v1/nodes/{node}")
        await kube.close()
    final = json.loads(stats_file.read_text())
    latencies = sorted(observer.running[n] - observer.bound[n] for n in observer.running)
    span = max(observer.running.values()) - min(observer.bound.values())
    writes = sum(v for k, v in at_running["requests"].items() if k in WRITES)
    everything = sum(v for k, v in final["requests"].items() if not k.endswith(" events"))
    return {
        "pods": PODS,
        "create_seconds": round(created, 2),
        "pods_per_second_bound_to_running": round(PODS / span, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "status_writes_per_pod_to_running": round(writes / PODS, 2),
        "api_requests_per_pod_lifecycle_without_events": round(everything / PODS, 2),
        "api_requests_by_kind": final["requests"],
        "delete_all_seconds": round(deletion, 2),
        "agent_peak_rss_mib": round(final["peak_rss_mib"], 1),
        "agent_cpu_seconds": round(final["cpu_seconds"], 2),
    }


def main() -> None:
    endpoints = Testbed().up()
    os.environ.update(endpoints.environment())
    result = asyncio.run(bench(endpoints.state))
    out = endpoints.state / "bench-pods.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
