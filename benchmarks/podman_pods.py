"""`make bench` (Podman part): one-container pods on the real Podman backend.

For 20 pods, one after another: apply → Running as the API shows it, and Running →
visible, from Podman's own `start` event of the container to the pod's Running status
arriving on a watch. Reports medians, and the Podman API calls the agent made per pod
lifecycle (the backend's own counter, which it logs when it closes).
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

import aiohttp
import yaml
from common import node_ready, pod, run  # benchmarks/common.py

from vkpy.kube.client import Kube, connect
from vkpy.testing.testbed import Endpoints

PODS = int(os.environ.get("BENCH_PODMAN_PODS", "20"))
NAMESPACE = "default"


async def podman_starts(socket: Path, node: str, seen: dict[str, float]) -> None:
    """Wall-clock time of each app container's `start` event, by pod name."""
    filters = json.dumps({"event": ["start"], "label": [f"vkpy.io/node={node}"]})
    connector = aiohttp.UnixConnector(path=str(socket))
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        url = "http://d/v4.0.0/libpod/events"
        async with session.get(url, params={"stream": "true", "filters": filters}) as response:
            async for line in response.content:
                event = json.loads(line)
                attributes = event.get("Actor", {}).get("Attributes", {})
                if attributes.get("vkpy.io/container") == "main":
                    seen.setdefault(attributes["vkpy.io/name"], event["timeNano"] / 1e9)


async def running_seen(kube: Kube, node: str, seen: dict[str, float]) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    query = {"labelSelector": f"bench={node}"}
    version = (await kube.get(path, **query))["metadata"]["resourceVersion"]
    params = {**query, "watch": True, "resourceVersion": version}
    async for event in kube.stream(path, query=params, read_timeout=600):
        obj = event["object"]
        if (obj.get("status") or {}).get("phase") == "Running":
            seen.setdefault(obj["metadata"]["name"], time.time())


async def bench(endpoints: Endpoints, work: Path) -> dict[str, Any]:
    node = f"bench-podman-{uuid.uuid4().hex[:6]}"
    config = yaml.safe_load((endpoints.state / "podman.yaml").read_text())
    config.update({"state_dir": str(work / "agent"), "log_level": "INFO"})
    config["kubelet_api"].update({"port": 0, "health_port": 0})
    config["backend"]["state_dir"] = str(work / "podman")
    config_file = work / "agent.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = work / "agent.log"
    with open(log, "wb") as out:
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vkpy.cli",
                "run",
                "--config",
                str(config_file),
                "--node-name",
                node,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    kube = Kube(await connect(None))
    starts: dict[str, float] = {}
    running: dict[str, float] = {}
    tasks = [
        asyncio.create_task(podman_starts(endpoints.podman.socket, node, starts)),
        asyncio.create_task(running_seen(kube, node, running)),
    ]
    apply_to_running = []
    try:
        for _ in range(300):
            if await node_ready(kube, node):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        for index in range(PODS):
            name = f"{node}-{index}"
            began = time.time()
            await kube.create(
                f"/api/v1/namespaces/{NAMESPACE}/pods", pod(node, name, ["sleep", "60"])
            )
            while name not in running:
                await asyncio.sleep(0.01)
            apply_to_running.append(running[name] - began)
        await kube.request(
            "DELETE",
            f"/api/v1/namespaces/{NAMESPACE}/pods",
            query={"labelSelector": f"bench={node}"},
        )
        while (
            await kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=f"bench={node}")
        )["items"]:
            await asyncio.sleep(0.5)
    finally:
        for task in tasks:
            task.cancel()
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        await kube.request("DELETE", f"/api/v1/nodes/{node}")
        await kube.close()
    visible = [running[n] - starts[n] for n in running if n in starts]
    calls = [
        json.loads(line.split("podman API calls: ", 1)[1])
        for line in log.read_text().splitlines()
        if "podman API calls: " in line
    ]
    total = sum(calls[-1].values()) if calls else None
    return {
        "pods": PODS,
        "apply_to_running_median_ms": round(statistics.median(apply_to_running) * 1000, 1),
        "running_to_status_visible_median_ms": round(statistics.median(visible) * 1000, 1),
        "podman_api_calls_per_pod_lifecycle": round(total / PODS, 1) if total else None,
        "podman_api_calls_by_kind": calls[-1] if calls else None,
    }


if __name__ == "__main__":
    run("podman", bench)
