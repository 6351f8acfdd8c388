"""What the benchmarks share: waiting for the node, and where results go.

The benchmarks run as scripts (`python benchmarks/NAME.py`), so this module is
imported from beside them.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vkpy.kube.client import Kube
from vkpy.testing.testbed import Endpoints, Testbed


def pod(node: str, name: str, command: list[str]) -> dict[str, Any]:
    """A one-container pod for virtual node ``node``, labelled ``bench=<node>``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": node}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "localhost/busybox:latest",
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                }
            ],
        },
    }


async def node_ready(kube: Kube, node: str) -> bool:
    try:
        found = await kube.get(f"/api/v1/nodes/{node}")
    except Exception:
        return False
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in found["status"].get("conditions", [])
    )


def run(name: str, bench: Callable[[Endpoints, Path], Awaitable[dict[str, Any]]]) -> None:
    """Bring the testbed up, run ``bench`` with a work directory ``.testbed/bench-NAME``,
    print its figures and keep them in ``.testbed/bench-NAME.json``."""
    endpoints = Testbed().up()
    os.environ.update(endpoints.environment())
    work = endpoints.state / f"bench-{name}"
    work.mkdir(exist_ok=True)
    text = json.dumps(asyncio.run(bench(endpoints, work)), indent=2)
    (endpoints.state / f"bench-{name}.json").write_text(text)
    print(text)
