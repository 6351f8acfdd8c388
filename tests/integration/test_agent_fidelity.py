"""What a pod sees and what its status says, as the kubelet gives them, through `vkpy run`
and the real apiserver on a Podman node and a Slurm node: resourceFieldRef values (a
divisor stored as "0", a limit the container does not set), status.podIP in env and
args, secret file modes, init-container statuses and pod conditions. The rules come
from the kubelet's source (pkg/kubelet/kubelet_pods.go, pkg/kubelet/status/generate.go,
pkg/api/v1/resource/helpers.go), cited where vkpy applies them."""

import asyncio
import json
import math
import uuid
from decimal import Decimal

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.kube.client import Kube
from vkpy.quantity import parse_quantity
from vkpy.testing.waiting import eventually

from .helpers import AgentProcess, kubectl, pod_for, pod_phase, running_agent
from .test_agent_slurm import slurm_agent

NS = "default"
IMAGE = "localhost/busybox:latest"
SCRIPT = (
    'echo "div0=$DIV0 cpu=$CPU ip=$MY_IP"; echo "arg=$0"; stat -c \'mode=%a\' /sec/t /sec/picked'
)


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


def fidelity_pod(node: str, kind: str) -> dict:
    env = [
        {
            "name": "DIV0",  # the apiserver keeps a divisor of "0" as it is: the kubelet uses 1
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "0"}},
        },
        {  # no CPU limit: the node's allocatable
            "name": "CPU",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}},
        },
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    main = {
        "name": "main",
        "image": IMAGE,
        "command": ["sh", "-c", SCRIPT],
        "args": ["http://$(MY_IP):8080"],
        "env": env,
        "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "100m"}},
        "volumeMounts": [{"name": "sec", "mountPath": "/sec", "readOnly": True}],
    }
    wait = {"name": "wait", "image": IMAGE, "command": ["sh", "-c", "sleep 6"]}
    return pod_for(
        node,
        f"{node}-fidelity",
        [main],
        kind=kind,
        initContainers=[wait],
        volumes=[
            {
                "name": "sec",
                "secret": {
                    "secretName": node,
                    "defaultMode": 0o440,
                    "items": [
                        {"key": "t", "path": "t"},
                        {"key": "t", "path": "picked", "mode": 0o400},
                    ],
                },
            }
        ],
    )


def conditions(pod: dict) -> dict[str, tuple[str, str, str]]:
    return {
        c["type"]: (c["status"], c.get("reason", ""), c.get("message", ""))
        for c in pod["status"].get("conditions") or []
    }


async def initializing(kube: Kube, name: str) -> dict | None:
    pod = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    init = (pod["status"].get("initContainerStatuses") or [{}])[0]
    return pod if "running" in init.get("state", {}) else None


async def check_fidelity(testbed, kube: Kube, node: str, kind: str) -> None:
    await kube.create(
        f"/api/v1/namespaces/{NS}/secrets", {"metadata": {"name": node}, "stringData": {"t": "x"}}
    )
    name = f"{node}-fidelity"
    await kube.create(f"/api/v1/namespaces/{NS}/pods", fidelity_pod(node, kind))
    # While the init container runs (pkg/kubelet/status/generate.go).
    during = await eventually(lambda: initializing(kube, name), timeout=60, what="init to run")
    (main,) = during["status"]["containerStatuses"]
    assert main["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert during["status"]["initContainerStatuses"][0]["ready"] is False
    assert conditions(during)["Initialized"] == (
        "False",
        "ContainersNotInitialized",
        "containers with incomplete status: [wait]",
    )
    assert conditions(during)["Ready"] == (
        "False",
        "ContainersNotReady",
        "containers with unready status: [main]",
    )

    async def finished() -> bool:
        return await pod_phase(kube, NS, name) in ("Succeeded", "Failed")

    await eventually(finished, timeout=90, what="the pod to finish")
    done = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"], indent=1)
    assert done["status"]["initContainerStatuses"][0]["ready"] is True
    assert conditions(done)["Initialized"][:2] == ("True", "PodCompleted")
    assert conditions(done)["Ready"][:2] == ("False", "PodCompleted")
    node_cpu = (await kube.get(f"/api/v1/nodes/{node}"))["status"]["allocatable"]["cpu"]
    cpus = math.ceil(parse_quantity(node_cpu) / Decimal(1))
    pod_ip = done["status"].get("podIP", "")
    assert pod_ip, json.dumps(done["status"], indent=1)

    async def logs() -> str:
        result = await asyncio.to_thread(kubectl, testbed, "logs", name, "-c", "main")
        return result.stdout if result.returncode == 0 else ""

    output = await eventually(logs, timeout=60, what="kubectl logs")
    assert output.splitlines() == [
        f"div0={64 * 2**20} cpu={cpus} ip={pod_ip}",
        f"arg=http://{pod_ip}:8080",
        "mode=440",
        "mode=400",
    ]
    await kube.delete(f"/api/v1/namespaces/{NS}/secrets/{node}")


async def test_a_podman_pod_sees_and_reports_what_a_kubelet_gives(testbed, kube, tmp_path):
    node = f"fid-podman-{uuid.uuid4().hex[:6]}"
    async with running_agent(kube, AgentProcess(testbed, tmp_path, node)):
        await check_fidelity(testbed, kube, node, "podman")


async def test_a_slurm_pod_sees_and_reports_what_a_kubelet_gives(login_user, kube, tmp_path):
    async with slurm_agent(login_user, kube, tmp_path, "fid-slurm") as agent:
        await check_fidelity(login_user, kube, agent.name, "slurm")


async def test_readiness_gates_and_other_writers_conditions_on_a_podman_node(
    testbed, kube, tmp_path
):
    """Ready waits for the pod's readiness gates; a condition another controller writes
    (as a load balancer's does, with a strategic merge patch) survives vkpy's writes."""
    node = f"fid-gates-{uuid.uuid4().hex[:6]}"
    name = f"{node}-gated"
    main = {"name": "main", "image": IMAGE, "command": ["sleep", "120"]}
    gated = pod_for(
        node, name, [main], kind="podman", readinessGates=[{"conditionType": "example.com/lb"}]
    )
    path = f"/api/v1/namespaces/{NS}/pods/{name}"
    async with running_agent(kube, AgentProcess(testbed, tmp_path, node)):
        await kube.create(f"/api/v1/namespaces/{NS}/pods", gated)

        async def containers_ready() -> dict | None:
            pod = await kube.get(path)
            return pod if conditions(pod).get("ContainersReady", ("",))[0] == "True" else None

        held = await eventually(containers_ready, timeout=60, what="the container to be ready")
        assert conditions(held)["Ready"] == (
            "False",
            "ReadinessGatesNotReady",
            'corresponding condition of pod readiness gate "example.com/lb" does not exist.',
        )
        gate = {"type": "example.com/lb", "status": "True", "reason": "Registered"}
        await kube.strategic_patch(f"{path}/status", {"status": {"conditions": [gate]}})

        async def ready() -> dict | None:
            pod = await kube.get(path)
            return pod if conditions(pod)["Ready"][0] == "True" else None

        opened = await eventually(ready, timeout=30, what="Ready once the gate is True")
        assert conditions(opened)["example.com/lb"] == ("True", "Registered", "")
        assert conditions(opened)["ContainersReady"][0] == "True"
