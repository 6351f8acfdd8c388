"""The agent as a real Deployment: its image (`make image`) runs as a pod on the
testbed's worker node under a real kubelet, from the testbed's overlay of
examples/deploy/podman applied with `kubectl apply -k`.

What only a real pod proves: the image's entrypoint, user and read-only root
filesystem; the probes on the health port; the downward-API pod IP becoming the
virtual node's InternalIP, where the apiserver reaches the kubelet API with its
certificate verified (`kubectl logs`); the in-cluster ServiceAccount credentials; and a
replacement pod adopting the pods its predecessor started.
"""

import asyncio
import json

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.kube.client import Kube
from vkpy.testing import incluster
from vkpy.testing.testbed import Testbed
from vkpy.testing.waiting import eventually

from .helpers import kubectl, pod_phase

NAMESPACE = "incluster-user"
NODE = incluster.VIRTUAL_NODE


@pytest.fixture(scope="module")
def deployed(testbed, worker_node):
    incluster.prepare(Testbed(testbed.state), testbed, worker_node)
    kubectl(testbed, "create", "namespace", NAMESPACE)
    yield incluster.deploy(testbed)
    kubectl(testbed, "delete", "namespace", NAMESPACE, "--wait=false")
    incluster.undeploy(testbed)


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


def user_pod(name: str, command: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": NODE},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "main",
                    "image": "localhost/busybox:latest",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", command],
                }
            ],
        },
    }


def apply(testbed, manifest: dict, tmp_path) -> None:
    path = tmp_path / f"{manifest['metadata']['name']}.json"
    path.write_text(json.dumps(manifest))
    done = kubectl(testbed, "apply", "-f", str(path))
    assert done.returncode == 0, done.stderr


def agent_pod(testbed, name: str) -> dict:
    got = kubectl(testbed, "get", "pod", "-n", incluster.NAMESPACE, name, "-o", "json")
    assert got.returncode == 0, got.stderr
    return dict(json.loads(got.stdout))


def test_the_agent_pod_runs_the_image_as_its_user_and_passes_its_probes(testbed, deployed):
    pod = agent_pod(testbed, deployed.pod)
    assert pod["spec"]["nodeName"] == "testbed-worker"
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True and status["restartCount"] == 0
    assert status["image"].endswith("vkpy:0.1.0")
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    uid = kubectl(testbed, "exec", "-n", incluster.NAMESPACE, deployed.pod, "--", "id", "-u")
    # The image has no shell tools but Python's; `id` comes from coreutils in its rootfs.
    assert uid.returncode == 0, uid.stderr
    assert uid.stdout.strip() == "10001"


async def test_a_user_pod_succeeds_and_kubectl_logs_reaches_the_agent_pod(
    testbed, deployed, kube, tmp_path
):
    node = await kube.get(f"/api/v1/nodes/{NODE}")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == deployed.pod_ip
    apply(testbed, user_pod("hello", "echo hello through the deployed agent"), tmp_path)

    async def succeeded() -> bool:
        return await pod_phase(kube, NAMESPACE, "hello") == "Succeeded"

    await eventually(succeeded, timeout=90, what="the user pod to succeed")
    # The apiserver dials <agent pod IP>:10250 and verifies the CSR-issued certificate.
    logs = await asyncio.to_thread(kubectl, testbed, "logs", "-n", NAMESPACE, "hello")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "hello through the deployed agent\n"


async def test_a_new_agent_pod_adopts_the_running_pods(testbed, deployed, kube, tmp_path):
    apply(testbed, user_pod("long", "echo started; sleep 3600"), tmp_path)

    async def running() -> dict | None:
        pod = await kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods/long")
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return statuses[0] if statuses and "running" in statuses[0]["state"] else None

    before = await eventually(running, timeout=90, what="the long pod to run")
    done = kubectl(testbed, "delete", "pod", "-n", incluster.NAMESPACE, deployed.pod)
    assert done.returncode == 0, done.stderr
    successor = await asyncio.to_thread(incluster.wait_for_agent, testbed)
    assert successor.pod != deployed.pod
    after = await eventually(running, timeout=60, what="the long pod to be reported again")
    # The same container, neither restarted nor started twice.
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == 0
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    logs = await asyncio.to_thread(kubectl, testbed, "logs", "-n", NAMESPACE, "long")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "started\n"
