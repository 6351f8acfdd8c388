"""`make bench`: 100 VirtualNodes served by one `vkpy operator` process, then 1,000 pods
spread over them.

The control plane is the real testbed on these same 2 cores; every node's backend is
the in-process instant one (benchmarks/instant_operator.py), so the figures measure the
operator, its agents and the API server alone. Reported:
- the time from creating the VirtualNodes to every Node Ready;
- the operator's RSS and its CPU at rest (all nodes Ready, no pods), over a minute;
- how late the nodes' Lease renewals were, p99: the gap between two renewTimes of one
  Lease, less the renewal period;
- pods/s from the first pod bound to the last one Running, beside the single-node
  figure of benchmarks/pods.py (its last result, when there is one).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from common import run as run_bench  # benchmarks/common.py
from pods import Observer, pod, wait_for  # benchmarks/pods.py

from vkpy.errors import KubeApiError
from vkpy.kube.client import Kube, connect
from vkpy.kube.watching import Change, Snapshot, watch_forever
from vkpy.operator.crd import GROUP, PLURAL, VERSION
from vkpy.testing.testbed import Endpoints
from vkpy.testing.virtualnodes import virtual_node

NODES = int(os.environ.get("BENCH_OPERATOR_NODES", "100"))
PODS = int(os.environ.get("BENCH_OPERATOR_PODS", "1000"))
REST_SECONDS = float(os.environ.get("BENCH_OPERATOR_REST_SECONDS", "60"))
RENEW_SECONDS = 10.0  # the agent's default lease_renew_seconds
PORTS = f"10500-{10500 + NODES - 1}"
NAMESPACE = "default"
VN_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
CRD = Path(__file__).parent.parent / "manifests/operator/virtualnode-crd.yaml"
TICK = os.sysconf("SC_CLK_TCK")


def spec(node: str) -> dict[str, Any]:
    return {
        "node": {"name": node},
        "backend": {"kind": "podman"},  # run by the instant backend, see instant_operator.py
        "kubelet_api": {"approve_own_csr": True},
    }


def process_figures(pid: int) -> dict[str, float]:
    """RSS now and at its peak (MiB), and CPU seconds so far, of process ``pid``."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return {
        "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
        "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
        "cpu_seconds": (int(fields[11]) + int(fields[12])) / TICK,  # utime, stime
    }


async def follow(kube: Kube, path: str, query: dict[str, str], seen: Callable[[Any], None]) -> None:
    """Every object at ``path`` and each change to it, for as long as the task lives."""

    async def handle(change: Change) -> None:
        for item in change.items if isinstance(change, Snapshot) else (change.object,):
            seen(item)

    await watch_forever(kube, path, query, handle)


class Nodes:
    """When each of the run's Nodes was first Ready, and each renewTime of its Lease."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.ready: dict[str, float] = {}
        self.renewals: dict[str, list[datetime]] = defaultdict(list)

    def node(self, obj: Any) -> None:
        name = obj["metadata"]["name"]
        conditions = (obj.get("status") or {}).get("conditions") or []
        if name.startswith(self.run) and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions
        ):
            self.ready.setdefault(name, time.monotonic())

    def lease(self, obj: Any) -> None:
        name, renewed = obj["metadata"]["name"], (obj.get("spec") or {}).get("renewTime")
        if not name.startswith(self.run) or not renewed:
            return
        times = self.renewals[name]
        at = datetime.fromisoformat(renewed)
        if not times or times[-1] != at:
            times.append(at)

    def lateness(self, since: datetime) -> list[float]:
        return sorted(
            (later - earlier).total_seconds() - RENEW_SECONDS
            for times in self.renewals.values()
            for earlier, later in itertools.pairwise(times)
            if earlier >= since
        )


def percentile(values: list[float], share: float) -> float:
    return values[max(0, int(len(values) * share) - 1)] if values else float("nan")


async def bench(endpoints: Endpoints, work: Path) -> dict[str, Any]:
    run = f"vn-{uuid.uuid4().hex[:5]}"
    names = [f"{run}-{index:03d}" for index in range(NODES)]
    subprocess.run(["kubectl", "apply", "-f", str(CRD)], check=True, capture_output=True)
    subprocess.run(
        ["kubectl", "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}"],
        check=True,
        capture_output=True,
    )
    kube = Kube(await connect(None, pool_size=64))
    nodes = Nodes(run)
    watches = [
        asyncio.create_task(follow(kube, "/api/v1/nodes", {}, nodes.node)),
        asyncio.create_task(
            follow(
                kube,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {},
                nodes.lease,
            )
        ),
    ]
    operator = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("instant_operator.py")),
            str(work / run),
            PORTS,
            NAMESPACE,
        ]
    )
    result: dict[str, Any] = {"virtual_nodes": NODES, "pods": PODS}
    try:
        await asyncio.sleep(3)  # the operator's watch is open
        gate = asyncio.Semaphore(16)

        async def create(name: str) -> None:
            async with gate:
                await kube.create(VN_PATH, virtual_node(name, spec(name)))

        began = time.monotonic()
        await asyncio.gather(*(create(name) for name in names))
        await wait_for(lambda: len(nodes.ready) >= NODES, 600, "every Node Ready")
        result["create_to_all_ready_seconds"] = round(max(nodes.ready.values()) - began, 1)
        await asyncio.sleep(15)  # serving certificates, first status writes
        rest_began, before = datetime.now().astimezone(), process_figures(operator.pid)
        await asyncio.sleep(REST_SECONDS)
        after = process_figures(operator.pid)
        late = nodes.lateness(rest_began)
        result |= {
            "operator_rss_at_rest_mib": round(after["rss_mib"], 1),
            "operator_cpu_at_rest_percent_of_a_core": round(
                100 * (after["cpu_seconds"] - before["cpu_seconds"]) / REST_SECONDS, 2
            ),
            "lease_renewals_measured": len(late),
            "lease_lateness_p50_s": round(percentile(late, 0.5), 3),
            "lease_lateness_p99_s": round(percentile(late, 0.99), 3),
            "lease_lateness_max_s": round(max(late, default=float("nan")), 3),
        }
        result |= await spread_pods(kube, run, names)
        final = process_figures(operator.pid)
        result["operator_peak_rss_mib"] = round(final["peak_rss_mib"], 1)
        result["operator_cpu_seconds_total"] = round(final["cpu_seconds"], 1)
        late = nodes.lateness(rest_began)
        result["lease_lateness_p99_s_rest_and_pods"] = round(percentile(late, 0.99), 3)
        result["single_node_pods_per_second"] = single_node_figure(endpoints.state)
    finally:
        await clean_up(kube, run, names)
        operator.send_signal(signal.SIGTERM)
        operator.wait(60)
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        await kube.close()
    return result


async def spread_pods(kube: Kube, run: str, names: list[str]) -> dict[str, Any]:
    """PODS pods, round-robin over the nodes: bound-to-Running throughput and latency."""
    observer = Observer()

    def seen(obj: Any) -> None:
        name, now = obj["metadata"]["name"], time.monotonic()
        if (obj.get("spec") or {}).get("nodeName"):
            observer.bound.setdefault(name, now)
        if (obj.get("status") or {}).get("phase") == "Running":
            observer.running.setdefault(name, now)

    path, query = f"/api/v1/namespaces/{NAMESPACE}/pods", {"labelSelector": f"bench={run}"}
    watcher = asyncio.create_task(follow(kube, path, query, seen))
    await asyncio.sleep(0.5)
    gate = asyncio.Semaphore(32)

    async def create(index: int) -> None:
        async with gate:
            body = pod(names[index % len(names)], run, index)
            await kube.create(f"/api/v1/namespaces/{NAMESPACE}/pods", body)

    await asyncio.gather(*(create(index) for index in range(PODS)))

    def all_running() -> bool:
        if watcher.done():
            watcher.result()
            raise SystemExit("bench: the pod watch ended early")
        return len(observer.running) >= PODS

    await wait_for(all_running, 600, "all pods Running")
    watcher.cancel()
    latencies = sorted(observer.running[n] - observer.bound[n] for n in observer.running)
    span = max(observer.running.values()) - min(observer.bound.values())
    return {
        "pods_per_second_bound_to_running": round(PODS / span, 1),
        "pod_latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "pod_latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def single_node_figure(state: Path) -> float | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return float(
            json.loads((state / "bench-pods.json").read_text())["pods_per_second_bound_to_running"]
        )
    return None


async def clean_up(kube: Kube, run: str, names: list[str]) -> None:
    """The run's pods, then its VirtualNodes (Drain: their Nodes go too)."""
    with contextlib.suppress(KubeApiError):
        await kube.request(
            "DELETE",
            f"/api/v1/namespaces/{NAMESPACE}/pods",
            query={"labelSelector": f"bench={run}"},
        )
    for name in names:
        with contextlib.suppress(KubeApiError):
            await kube.delete(f"{VN_PATH}/{name}")

    async def remaining() -> int:
        listing = await kube.get(VN_PATH)
        return sum(item["metadata"]["name"].startswith(run) for item in listing["items"])

    deadline = time.monotonic() + 300
    while await remaining() and time.monotonic() < deadline:
        await asyncio.sleep(1)


if __name__ == "__main__":
    run_bench("operator", bench)
