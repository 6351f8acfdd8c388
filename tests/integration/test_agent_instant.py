"""The agent against the real control plane, with the in-process instant backend.

The apiserver, scheduler and controller-manager are real; only the backend is a
double here (the Podman tests run the same lifecycle on real containers).
"""

import asyncio
import contextlib
import uuid

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.agent import Agent
from vkpy.backend import Container, PodSpec
from vkpy.config import load
from vkpy.kube.client import Kube
from vkpy.quantity import parse_quantity
from vkpy.testing.instant import EXIT_ANNOTATION, InstantBackend
from vkpy.testing.waiting import eventually

from .helpers import events_for, pod_for, pod_phase

NS = "default"


@pytest.fixture
async def kube(kube_api: ApiClient):
    return Kube(kube_api)


def settings_for(name, tmp_path, **more):
    overrides = {"node": {"name": name}, "state_dir": str(tmp_path)}
    overrides["kubelet_api"] = {"port": 0, "health_port": 0}
    return load(None, {**overrides, **more})


@pytest.fixture
async def agent(kube, tmp_path):
    name = f"instant-{uuid.uuid4().hex[:6]}"
    settings = settings_for(name, tmp_path, lease_renew_seconds=1, status_poll_seconds=0.5)
    backend = InstantBackend()
    agent = Agent(settings, kube, backend)
    task = asyncio.create_task(agent.run())
    await eventually(lambda: _ready(kube, name), what="node Ready")
    yield agent
    agent.stop()
    await asyncio.wait_for(task, 10)
    with contextlib.suppress(Exception):
        await kube.delete(f"/api/v1/nodes/{name}")


async def _ready(kube, name):
    try:
        node = await kube.get(f"/api/v1/nodes/{name}")
    except Exception:
        return False
    conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
    return conditions.get("Ready") == "True"


async def test_node_registration_labels_taint_lease(kube, agent):
    name = agent.identity.name
    node = await kube.get(f"/api/v1/nodes/{name}")
    labels = node["metadata"]["labels"]
    assert labels["type"] == "virtual-kubelet"
    assert labels["kubernetes.io/role"] == "agent"
    assert labels["kubernetes.io/hostname"] == name
    assert {
        "key": "virtual-kubelet.io/provider",
        "value": "instant",
        "effect": "NoSchedule",
    } in node["spec"]["taints"]
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.server.port
    assert parse_quantity(node["status"]["capacity"]["pods"]) == 5000
    assert {c["type"] for c in node["status"]["conditions"]} == {
        "Ready",
        "MemoryPressure",
        "DiskPressure",
        "PIDPressure",
        "NetworkUnavailable",
    }
    assert all(
        node["status"]["nodeInfo"][k] for k in ("machineID", "bootID", "kubeletVersion", "osImage")
    )
    lease = await kube.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
    assert lease["spec"]["holderIdentity"] == name
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    first = lease["spec"]["renewTime"]
    await eventually(lambda: _renewed(kube, name, first), what="lease renewal")


async def _renewed(kube, name, before):
    lease = await kube.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
    return lease["spec"]["renewTime"] != before


async def test_pods_run_succeed_fail_and_are_deleted(kube, agent):
    node = agent.identity.name
    ok, bad, long = f"{node}-ok", f"{node}-bad", f"{node}-long"
    for name, code in ((ok, "0"), (bad, "3")):
        await kube.create(
            f"/api/v1/namespaces/{NS}/pods",
            pod_for(
                node,
                name,
                [{"name": "main", "image": "busybox"}],
                metadata={"annotations": {EXIT_ANNOTATION: code}},
            ),
        )
    await kube.create(
        f"/api/v1/namespaces/{NS}/pods", pod_for(node, long, [{"name": "main", "image": "busybox"}])
    )
    await eventually(lambda: _phase_is(kube, ok, "Succeeded"), what="Succeeded")
    await eventually(lambda: _phase_is(kube, bad, "Failed"), what="Failed")
    await eventually(lambda: _phase_is(kube, long, "Running"), what="Running")
    failed = await kube.get(f"/api/v1/namespaces/{NS}/pods/{bad}")
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    running = await kube.get(f"/api/v1/namespaces/{NS}/pods/{long}")
    assert {c["type"]: c["status"] for c in running["status"]["conditions"]}["Ready"] == "True"
    assert running["status"]["podIP"] == "10.0.0.1"
    started = [e for e in await events_for(kube, NS, long) if e["reason"] == "Started"]
    assert started and started[0]["source"] == {"component": "kubelet", "host": node}
    for name in (ok, bad, long):
        await kube.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
    await eventually(lambda: _gone(kube, long), what="pod deleted by the agent")
    assert agent.backend.runs == {}


async def test_unsupported_feature_fails_the_pod_with_an_event(kube, agent):
    node = agent.identity.name
    name = f"{node}-probe"
    container = {
        "name": "main",
        "image": "busybox",
        "readinessProbe": {"exec": {"command": ["true"]}},
    }
    await kube.create(f"/api/v1/namespaces/{NS}/pods", pod_for(node, name, [container]))
    await eventually(lambda: _phase_is(kube, name, "Failed"), what="Failed")
    pod = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    assert pod["status"]["reason"] == "UnsupportedPodSpec"
    assert "readiness probes are not supported" in pod["status"]["message"]
    events = await events_for(kube, NS, name)
    assert any(e["reason"] == "UnsupportedPodSpec" and e["type"] == "Warning" for e in events)
    assert agent.backend.creates == 0
    await kube.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
    await eventually(lambda: _gone(kube, name), what="deleted")


async def test_missing_configmap_waits_then_runs(kube, agent):
    node = agent.identity.name
    name = f"{node}-cfg"
    container = {
        "name": "main",
        "image": "busybox",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": name, "key": "x"}}}],
    }
    await kube.create(f"/api/v1/namespaces/{NS}/pods", pod_for(node, name, [container]))

    async def waiting_reason():
        pod = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return (statuses[0].get("state") or {}).get("waiting", {}).get("reason")

    assert await eventually(waiting_reason) == "CreateContainerConfigError"
    await kube.create(
        f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": name}, "data": {"x": "1"}}
    )
    await eventually(
        lambda: _phase_is(kube, name, "Running"), timeout=40, what="Running after retry"
    )
    await kube.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
    await kube.delete(f"/api/v1/namespaces/{NS}/configmaps/{name}")
    await eventually(lambda: _gone(kube, name), what="deleted")


async def _phase_is(kube, name, phase):
    return await pod_phase(kube, NS, name) == phase


async def _gone(kube, name):
    try:
        await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    except Exception as exc:
        return getattr(exc, "status", None) == 404
    return False


async def test_stopped_agent_goes_unknown_and_a_restart_adopts_without_a_second_create(
    kube, tmp_path
):
    name = f"instant-{uuid.uuid4().hex[:6]}"
    settings = settings_for(name, tmp_path, lease_renew_seconds=1, status_poll_seconds=0.5)
    backend = InstantBackend()
    first = Agent(settings, kube, backend)
    task = asyncio.create_task(first.run())
    try:
        await eventually(lambda: _ready(kube, name), what="node Ready")
        pod_name = f"{name}-keep"
        await kube.create(
            f"/api/v1/namespaces/{NS}/pods",
            pod_for(name, pod_name, [{"name": "main", "image": "busybox"}]),
        )
        await eventually(lambda: _phase_is(kube, pod_name, "Running"), what="Running")
        first.stop()
        await asyncio.wait_for(task, 10)
        assert set(backend.runs) and backend.creates == 1  # left running for the next start

        async def unknown():
            node = await kube.get(f"/api/v1/nodes/{name}")
            ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
            return ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"

        await eventually(
            unknown, timeout=40, what="Ready=Unknown from the node lifecycle controller"
        )
        second = Agent(settings, kube, backend)  # same backend state: the jobs survived
        task = asyncio.create_task(second.run())
        await eventually(lambda: _ready(kube, name), what="Ready again")
        await asyncio.sleep(1)
        assert backend.creates == 1
        assert await pod_phase(kube, NS, pod_name) == "Running"
        await kube.delete(f"/api/v1/namespaces/{NS}/pods/{pod_name}")
        await eventually(lambda: _gone(kube, pod_name), what="deleted")
        assert backend.runs == {}
        second.stop()
        await asyncio.wait_for(task, 10)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(Exception):
            await kube.delete(f"/api/v1/nodes/{name}")


async def test_orphaned_backend_pods_are_removed_on_start(kube, tmp_path):
    name = f"instant-{uuid.uuid4().hex[:6]}"
    settings = settings_for(name, tmp_path)
    backend = InstantBackend()
    await backend.create(
        PodSpec(
            uid="no-such-pod",
            namespace=NS,
            name="ghost",
            containers=(Container("main", "busybox"),),
        )
    )
    agent = Agent(settings, kube, backend)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: _empty(backend), what="orphan removed")
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
        with contextlib.suppress(Exception):
            await kube.delete(f"/api/v1/nodes/{name}")


async def _empty(backend):
    return not backend.runs
