"""The agent as a real Deployment: its image (`make image`) runs as a pod on the
testbed's worker node under a real kubelet, from the testbed's overlays of
examples/deploy/podman and examples/deploy/slurm applied with `kubectl apply -k`.

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


@pytest.fixture(scope="module")
def user_namespace(testbed):
    kubectl(testbed, "create", "namespace", NAMESPACE)
    yield NAMESPACE
    kubectl(testbed, "delete", "namespace", NAMESPACE, "--wait=false")


@pytest.fixture(
    scope="module", params=[incluster.PODMAN, incluster.SLURM], ids=lambda o: o.path.name
)
def overlay(request, testbed, worker_node, user_namespace):
    chosen: incluster.Overlay = request.param
    incluster.prepare(Testbed(testbed.state), testbed, worker_node, chosen)
    yield chosen
    incluster.undeploy(testbed, chosen)


@pytest.fixture(scope="module")
def deployed(testbed, overlay):
    return incluster.deploy(testbed, overlay)


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


def user_pod(node: str, name: str, command: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
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


def agent_pod(testbed, overlay, name: str) -> dict:
    got = kubectl(testbed, "get", "pod", "-n", overlay.namespace, name, "-o", "json")
    assert got.returncode == 0, got.stderr
    return dict(json.loads(got.stdout))


def test_the_agent_pod_runs_the_image_as_its_user_and_passes_its_probes(testbed, overlay, deployed):
    pod = agent_pod(testbed, overlay, deployed.pod)
    assert pod["spec"]["nodeName"] == "testbed-worker"
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True and status["restartCount"] == 0
    assert status["image"].endswith("vkpy:0.1.0")
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    # kubectl exec through the real kubelet; `id` is coreutils' in the image's rootfs.
    uid = kubectl(testbed, "exec", "-n", overlay.namespace, deployed.pod, "--", "id", "-u")
    assert uid.returncode == 0, uid.stderr
    assert uid.stdout.strip() == "10001"


def test_the_slurm_agent_is_admitted_under_the_restricted_standard(testbed, overlay, deployed):
    if overlay != incluster.SLURM:
        pytest.skip("the Podman overlay mounts host paths: its namespace is privileged")
    got = kubectl(testbed, "get", "namespace", overlay.namespace, "-o", "json")
    labels = json.loads(got.stdout)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert agent_pod(testbed, overlay, deployed.pod)["status"]["phase"] == "Running"


async def test_a_user_pod_succeeds_and_kubectl_logs_reaches_the_agent_pod(
    testbed, deployed, kube, tmp_path
):
    node = await kube.get(f"/api/v1/nodes/{deployed.node}")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == deployed.pod_ip
    apply(
        testbed, user_pod(deployed.node, "hello", "echo hello through the deployed agent"), tmp_path
    )

    async def succeeded() -> bool:
        return await pod_phase(kube, NAMESPACE, "hello") == "Succeeded"

    await eventually(succeeded, timeout=90, what="the user pod to succeed")
    # The apiserver dials <agent pod IP>:10250 and verifies the CSR-issued certificate.
    logs = await asyncio.to_thread(kubectl, testbed, "logs", "-n", NAMESPACE, "hello")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "hello through the deployed agent\n"


async def test_a_new_agent_pod_adopts_the_running_pods(testbed, overlay, deployed, kube, tmp_path):
    apply(testbed, user_pod(deployed.node, "long", "echo started; sleep 3600"), tmp_path)

    async def running() -> dict | None:
        pod = await kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods/long")
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return statuses[0] if statuses and "running" in statuses[0]["state"] else None

    before = await eventually(running, timeout=90, what="the long pod to run")
    done = kubectl(testbed, "delete", "pod", "-n", overlay.namespace, deployed.pod)
    assert done.returncode == 0, done.stderr
    successor = await asyncio.to_thread(incluster.wait_for_agent, testbed, overlay)
    assert successor.pod != deployed.pod
    after = await eventually(running, timeout=60, what="the long pod to be reported again")
    # The same container, neither restarted nor started twice.
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == 0
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    logs = await asyncio.to_thread(kubectl, testbed, "logs", "-n", NAMESPACE, "long")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "started\n"
