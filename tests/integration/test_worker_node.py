"""The testbed's worker node: a real kubelet and containerd, registered as a real node is.

It is the reference the fidelity corpus compares vkpy with and the node the agent's
Deployment runs on, so what those rely on is checked here: its own credentials under
the Node authorizer and NodeRestriction, pods that run from local images, pod IPs the
host reaches, the apiserver reachable from a pod, and `kubectl logs` through the
apiserver with the serving certificate verified.
"""

import asyncio
import json
import urllib.request

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.kube.client import Kube
from vkpy.testing.waiting import eventually
from vkpy.testing.worker import layout_of

from .helpers import kubectl, pod_phase

NAMESPACE = "worker-node"


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


@pytest.fixture(scope="module")
def namespace(testbed):
    kubectl(testbed, "create", "namespace", NAMESPACE)
    yield NAMESPACE
    kubectl(testbed, "delete", "namespace", NAMESPACE, "--wait=false")


def worker_pod(worker, name: str, command: str, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": worker.name,
            "tolerations": [{"key": worker.taint_key, "operator": "Exists"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "localhost/busybox:latest",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", command],
                }
            ],
            **spec,
        },
    }


def node_kubectl(testbed, *args: str):
    kubeconfig = layout_of(testbed.state).root / "kubelet.kubeconfig"
    return kubectl(testbed, f"--kubeconfig={kubeconfig}", *args)


async def test_the_node_is_ready_and_reports_its_versions(testbed, worker_node, kube):
    node = await kube.get(f"/api/v1/nodes/{worker_node.name}")
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == worker_node.versions["kubelet"]
    upstream = worker_node.versions["containerd"].split("~")[0]  # Debian's 1.6.20~ds1
    assert info["containerRuntimeVersion"] == f"containerd://{upstream}"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == worker_node.node_ip
    taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints", [])}
    assert (worker_node.taint_key, "NoSchedule") in taints


def test_the_kubelet_holds_a_node_identity_and_nothing_more(testbed, worker_node):
    whoami = node_kubectl(testbed, "auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    user = json.loads(whoami.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:node:{worker_node.name}"
    assert "system:nodes" in user["groups"]
    # NodeRestriction: a node may not label itself into node-restriction.kubernetes.io/.
    labelled = node_kubectl(
        testbed, "label", "node", worker_node.name, "node-restriction.kubernetes.io/x=y"
    )
    assert labelled.returncode != 0
    assert "forbidden" in labelled.stderr.lower(), labelled.stderr
    listed = node_kubectl(testbed, "get", "secrets", "-A")
    assert listed.returncode != 0 and "forbidden" in listed.stderr.lower(), listed.stderr


async def test_a_pod_runs_and_kubectl_logs_reaches_the_real_kubelet(
    testbed, worker_node, kube, namespace, tmp_path
):
    manifest = tmp_path / "pod.json"
    # The apiserver answers at the node's address from inside the pod network.
    command = (
        f"echo hello from the worker; nc -w 5 {worker_node.node_ip} 26443 </dev/null && echo api"
    )
    manifest.write_text(json.dumps(worker_pod(worker_node, "hello", command)))
    assert kubectl(testbed, "-n", namespace, "apply", "-f", str(manifest)).returncode == 0

    async def succeeded() -> bool:
        return await pod_phase(kube, namespace, "hello") == "Succeeded"

    await eventually(succeeded, timeout=60, what="the pod to succeed on the worker")
    logs = await asyncio.to_thread(kubectl, testbed, "-n", namespace, "logs", "hello")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "hello from the worker\napi\n"


async def test_the_host_reaches_a_pod_at_its_ip(testbed, worker_node, kube, namespace, tmp_path):
    command = "mkdir -p /www && echo served > /www/index.html && httpd -f -p 8080 -h /www"
    manifest = tmp_path / "server.json"
    manifest.write_text(json.dumps(worker_pod(worker_node, "server", command)))
    assert kubectl(testbed, "-n", namespace, "apply", "-f", str(manifest)).returncode == 0

    async def pod_ip() -> str | None:
        pod = await kube.get(f"/api/v1/namespaces/{namespace}/pods/server")
        status = pod.get("status") or {}
        return status.get("podIP") if status.get("phase") == "Running" else None

    address = await eventually(pod_ip, timeout=60, what="the server pod to run")
    assert (
        address is not None and address.startswith("10.244.0.") and address != worker_node.node_ip
    )

    def fetch() -> str:
        with urllib.request.urlopen(f"http://{address}:8080/", timeout=2) as answer:
            return str(answer.read().decode())

    async def served() -> bool:
        try:
            return await asyncio.to_thread(fetch) == "served\n"
        except OSError:
            return False

    await eventually(served, timeout=20, what="the pod's server to answer the host")
