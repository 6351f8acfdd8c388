"""The agent as a real in-cluster Deployment on the testbed's worker node.

``prepare`` builds the agent image (``make image``) and loads it into the worker's
containerd, sets up the Podman host the overlay expects (``agenthost``) and labels the
worker as that host. ``deploy`` applies the testbed's overlay with ``kubectl apply -k``
and waits until the agent's pod is Ready and its virtual node is Ready at the pod's IP,
approving the agent's kubelet-serving CSRs as an admin would (the base config's
``approve_own_csr: false``). ``undeploy`` deletes all of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vkpy.testing import agenthost, agentimage
from vkpy.testing.errors import TestbedError
from vkpy.testing.testbed import Endpoints, Testbed
from vkpy.testing.worker import Worker

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "tests" / "fixtures" / "deploy" / "podman"
NAMESPACE = "vkpy-testbed"
ACCOUNT = "testbed-vkpy"
DEPLOYMENT = "testbed-vkpy"
VIRTUAL_NODE = "vkpy-incluster"
HOST_LABEL = "vkpy.io/podman-host"


@dataclass(frozen=True)
class Deployed:
    pod: str
    pod_ip: str
    node: str


def kubectl(endpoints: Endpoints, *args: str, timeout: float = 120) -> str:
    env = {**os.environ, "KUBECONFIG": str(endpoints.cluster.admin_kubeconfig)}
    done = subprocess.run(
        ["kubectl", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    if done.returncode != 0:
        raise TestbedError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _get(endpoints: Endpoints, *args: str) -> Any:
    return json.loads(kubectl(endpoints, "get", *args, "-o", "json"))


def prepare(bed: Testbed, endpoints: Endpoints, worker: Worker) -> None:
    image = agentimage.build()
    agentimage.import_into_containerd(image.archive, worker.containerd_socket)
    podman_env = {**os.environ, "CONTAINERS_CONF": str(endpoints.podman.containers_conf)}
    agenthost.up(bed.supervisor, podman_env=podman_env)
    kubectl(endpoints, "label", "node", worker.name, f"{HOST_LABEL}=true", "--overwrite")


def approve_serving_csrs(endpoints: Endpoints) -> list[str]:
    """Approve the pending kubelet-serving CSRs of the testbed agent's account only."""
    approved = []
    for csr in _get(endpoints, "csr")["items"]:
        spec, status = csr["spec"], csr.get("status") or {}
        if (
            spec.get("signerName") == "kubernetes.io/kubelet-serving"
            and spec.get("username") == f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
            and not status.get("conditions")
        ):
            kubectl(endpoints, "certificate", "approve", csr["metadata"]["name"])
            approved.append(csr["metadata"]["name"])
    return approved


def _ready(conditions: list[dict[str, str]]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _agent_state(endpoints: Endpoints) -> Deployed | None:
    pods = _get(endpoints, "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=vkpy")
    live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    if len(live) != 1 or not _ready((live[0].get("status") or {}).get("conditions") or []):
        return None
    pod = live[0]
    try:
        node = _get(endpoints, "node", VIRTUAL_NODE)
    except TestbedError:
        return None
    addresses = {a["type"]: a["address"] for a in node["status"].get("addresses", [])}
    if addresses.get("InternalIP") != pod["status"]["podIP"]:
        return None  # the node still names the previous agent's pod
    if not _ready(node["status"].get("conditions") or []):
        return None
    return Deployed(pod["metadata"]["name"], pod["status"]["podIP"], VIRTUAL_NODE)


def wait_for_agent(endpoints: Endpoints, *, timeout: float = 180) -> Deployed:
    """Approve the agent's CSRs until its pod and its virtual node are both Ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        approve_serving_csrs(endpoints)
        state = _agent_state(endpoints)
        if state is not None:
            return state
        time.sleep(1)
    pods = kubectl(endpoints, "get", "pods", "-n", NAMESPACE, "-o", "wide")
    raise TestbedError(f"the agent's Deployment did not get Ready in {timeout:.0f}s:\n{pods}")


def deploy(endpoints: Endpoints) -> Deployed:
    kubectl(endpoints, "apply", "-k", str(OVERLAY))
    return wait_for_agent(endpoints)


def undeploy(endpoints: Endpoints) -> None:
    """Delete the virtual node's pods while the agent still runs (it stops their
    containers), then the overlay's objects and the virtual node."""
    selector = f"spec.nodeName={VIRTUAL_NODE}"
    try:
        kubectl(endpoints, "delete", "pods", "-A", "--field-selector", selector, "--timeout=60s")
    except TestbedError:  # no agent left to confirm: the containers go with agenthost.down
        kubectl(endpoints, "delete", "pods", "-A", "--field-selector", selector, "--force")
    kubectl(endpoints, "delete", "-k", str(OVERLAY), "--ignore-not-found", "--wait=true")
    kubectl(endpoints, "delete", "node", VIRTUAL_NODE, "--ignore-not-found")
