"""The agent as a real in-cluster Deployment on the testbed's worker node.

Two overlays of the examples, under tests/fixtures/deploy: ``PODMAN`` (the agent runs
pods on the worker's rootless Podman through its socket, in a namespace allowed host
paths) and ``SLURM`` (the agent submits Slurm jobs over SSH to the testbed's login node,
reached from the pod network, in a namespace enforcing the restricted Pod Security
Standard).

``prepare`` builds the agent image (``make image``) and loads it into the worker's
containerd; for Podman it sets up the host the overlay expects (``agenthost``) and
labels the worker as that host; for Slurm it makes the login node's sshd listen on the
worker's address and creates the Secret with the key and known_hosts. ``deploy``
applies an overlay with ``kubectl apply -k`` and waits until the agent's pod is Ready
and its virtual node is Ready at the pod's IP, approving the agent's kubelet-serving
CSRs as an admin would (the base config's ``approve_own_csr: false``). ``undeploy``
deletes all of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vkpy.testing import agenthost, agentimage, rootless, sshd
from vkpy.testing.errors import TestbedError
from vkpy.testing.testbed import Endpoints, Testbed
from vkpy.testing.worker import Worker

REPO = Path(__file__).resolve().parents[2]
HOST_LABEL = "vkpy.io/podman-host"


@dataclass(frozen=True)
class Overlay:
    """One of the testbed's overlays and the names it gives the agent."""

    path: Path
    namespace: str
    account: str
    virtual_node: str

    @property
    def csr_user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"


PODMAN = Overlay(
    REPO / "tests/fixtures/deploy/podman", "vkpy-testbed", "testbed-vkpy", "vkpy-incluster"
)
SLURM = Overlay(
    REPO / "tests/fixtures/deploy/slurm",
    "vkpy-testbed-slurm",
    "testbed-slurm-vkpy",
    "vkpy-incluster-slurm",
)


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


def prepare(bed: Testbed, endpoints: Endpoints, worker: Worker, overlay: Overlay = PODMAN) -> None:
    image = agentimage.build()
    agentimage.import_into_containerd(image.archive, worker.containerd_socket)
    if overlay == SLURM:
        _prepare_login_node(bed, endpoints, worker)
        return
    podman_env = {**os.environ, "CONTAINERS_CONF": str(endpoints.podman.containers_conf)}
    agenthost.up(bed.supervisor, podman_env=podman_env)
    kubectl(endpoints, "label", "node", worker.name, f"{HOST_LABEL}=true", "--overwrite")


def _prepare_login_node(bed: Testbed, endpoints: Endpoints, worker: Worker) -> None:
    """What examples/deploy/slurm asks of an admin: the login node's key and host key in
    the vkpy-ssh Secret; here the login node also listens where pods reach it."""
    rootless.prepare_login_user(endpoints.ssh.user)
    line = sshd.serve_pods(
        bed.state, bed.supervisor, address=worker.node_ip, port=endpoints.ssh.port
    )
    known_hosts = bed.state / "ssh" / "known_hosts_pods"
    known_hosts.write_text(line)
    manifest = kubectl(
        endpoints,
        "create",
        "secret",
        "generic",
        "vkpy-ssh",
        "-n",
        SLURM.namespace,
        f"--from-file=id_ed25519={endpoints.ssh.client_key}",
        f"--from-file=known_hosts={known_hosts}",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    namespace = kubectl(endpoints, "kustomize", str(SLURM.path))
    first = next(d for d in namespace.split("\n---\n") if "kind: Namespace" in d)
    kubectl_apply(endpoints, first)  # the Secret's namespace, with its labels, first
    kubectl_apply(endpoints, manifest)


def kubectl_apply(endpoints: Endpoints, manifest: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(endpoints.cluster.admin_kubeconfig)}
    done = subprocess.run(
        ["kubectl", "apply", "-f", "-"], input=manifest, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise TestbedError(f"kubectl apply: {done.stderr.strip()}")


def approve_serving_csrs(endpoints: Endpoints, overlay: Overlay) -> list[str]:
    """Approve the pending kubelet-serving CSRs of the overlay's account only."""
    approved = []
    for csr in _get(endpoints, "csr")["items"]:
        spec, status = csr["spec"], csr.get("status") or {}
        if (
            spec.get("signerName") == "kubernetes.io/kubelet-serving"
            and spec.get("username") == overlay.csr_user
            and not status.get("conditions")
        ):
            kubectl(endpoints, "certificate", "approve", csr["metadata"]["name"])
            approved.append(csr["metadata"]["name"])
    return approved


def _ready(conditions: list[dict[str, str]]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _agent_state(endpoints: Endpoints, overlay: Overlay) -> Deployed | None:
    pods = _get(endpoints, "pods", "-n", overlay.namespace, "-l", "app.kubernetes.io/name=vkpy")
    live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    if len(live) != 1 or not _ready((live[0].get("status") or {}).get("conditions") or []):
        return None
    pod = live[0]
    try:
        node = _get(endpoints, "node", overlay.virtual_node)
    except TestbedError:
        return None
    addresses = {a["type"]: a["address"] for a in node["status"].get("addresses", [])}
    if addresses.get("InternalIP") != pod["status"]["podIP"]:
        return None  # the node still names the previous agent's pod
    if not _ready(node["status"].get("conditions") or []):
        return None
    return Deployed(pod["metadata"]["name"], pod["status"]["podIP"], overlay.virtual_node)


def wait_for_agent(
    endpoints: Endpoints, overlay: Overlay = PODMAN, *, timeout: float = 180
) -> Deployed:
    """Approve the agent's CSRs until its pod and its virtual node are both Ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        approve_serving_csrs(endpoints, overlay)
        state = _agent_state(endpoints, overlay)
        if state is not None:
            return state
        time.sleep(1)
    pods = kubectl(endpoints, "get", "pods", "-n", overlay.namespace, "-o", "wide")
    raise TestbedError(f"the agent's Deployment did not get Ready in {timeout:.0f}s:\n{pods}")


def deploy(endpoints: Endpoints, overlay: Overlay = PODMAN) -> Deployed:
    kubectl(endpoints, "apply", "-k", str(overlay.path))
    return wait_for_agent(endpoints, overlay)


def undeploy(endpoints: Endpoints, overlay: Overlay = PODMAN) -> None:
    """Delete the virtual node's pods while the agent still runs (it stops their
    containers), then the overlay's objects and the virtual node."""
    selector = f"spec.nodeName={overlay.virtual_node}"
    try:
        kubectl(endpoints, "delete", "pods", "-A", "--field-selector", selector, "--timeout=60s")
    except TestbedError:  # no agent left to confirm: the containers go with agenthost.down
        kubectl(endpoints, "delete", "pods", "-A", "--field-selector", selector, "--force")
    kubectl(endpoints, "delete", "-k", str(overlay.path), "--ignore-not-found", "--wait=true")
    kubectl(endpoints, "delete", "node", overlay.virtual_node, "--ignore-not-found")
