"""`vkpy run` with the HTCondor backend (.testbed/htcondor.yaml) against the real control
plane: pods placed by the real scheduler, run as jobs of the testbed's HTCondor stand-in
over SSH (no HTCondor pool runs here), `kubectl logs` through the apiserver."""

import asyncio
import contextlib
import signal
import uuid

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.backends.htcondor import queue
from vkpy.kube.client import Kube
from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.waiting import eventually

from .helpers import AgentProcess, kubectl, node_ready, pod_for, pod_phase

NS = "default"
IMAGE = "localhost/busybox:latest"


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


@pytest.fixture
async def agent(testbed, kube, tmp_path):
    prepare_login_user(testbed.ssh.user)
    process = AgentProcess(testbed, tmp_path, f"htcondor-{uuid.uuid4().hex[:6]}", "htcondor.yaml")
    process.start()
    try:
        await eventually(lambda: node_ready(kube, process.name), timeout=40, what="node Ready")
    except AssertionError:
        process.stop()
        raise AssertionError(f"agent never got Ready:\n{process.tail()}") from None
    yield process
    listing = await kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={process.name}")
    for pod in listing["items"]:
        with contextlib.suppress(Exception):
            await kube.delete(f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}")
    with contextlib.suppress(AssertionError):
        await eventually(
            lambda: _no_pods(kube, process.name), timeout=60, what="the agent to delete its pods"
        )
    process.stop()
    with contextlib.suppress(Exception):
        await kube.delete(f"/api/v1/nodes/{process.name}")


async def _no_pods(kube, node):
    listing = await kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={node}")
    return not listing["items"]


def _submissions(agent) -> list[str]:
    return [line for line in agent.log.read_text().splitlines() if "submitted as HTCondor" in line]


async def _phase(kube, name, *phases):
    return await pod_phase(kube, NS, name) in phases


async def test_pods_run_log_fail_delete_and_survive_kill_9(testbed, kube, agent):
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{agent.name}-cm"}}
    await kube.create(f"/api/v1/namespaces/{NS}/configmaps", {**config, "data": {"k": "from-cm"}})
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{agent.name}-s"}}
    await kube.create(f"/api/v1/namespaces/{NS}/secrets", {**secret, "stringData": {"t": "s3cr3t"}})
    hostile = 'it\'s "q" $(id) `id` ;|& ünï\nline2'
    main = {
        "name": "main",
        "image": IMAGE,
        "command": ["sh", "-c", 'cat /cm/k /sec/t /w/init; printf "%s|%s" "$1" "$H"; sleep 300'],
        "args": ["sh", hostile],
        "env": [{"name": "H", "value": hostile}],
        "volumeMounts": [
            {"name": "cm", "mountPath": "/cm"},
            {"name": "sec", "mountPath": "/sec"},
            {"name": "w", "mountPath": "/w"},
        ],
    }
    side = {"name": "side", "image": IMAGE, "command": ["sleep", "300"]}
    init = {
        "name": "init",
        "image": IMAGE,
        "command": ["sh", "-c", "echo from-init > /w/init"],
        "volumeMounts": [{"name": "w", "mountPath": "/w"}],
    }
    name = f"{agent.name}-full"
    await kube.create(
        f"/api/v1/namespaces/{NS}/pods",
        pod_for(
            agent.name,
            name,
            [main, side],
            kind="htcondor",
            initContainers=[init],
            volumes=[
                {"name": "cm", "configMap": {"name": f"{agent.name}-cm"}},
                {"name": "sec", "secret": {"secretName": f"{agent.name}-s"}},
                {"name": "w", "emptyDir": {}},
            ],
        ),
    )
    failing = f"{agent.name}-exit3"
    await kube.create(
        f"/api/v1/namespaces/{NS}/pods",
        pod_for(
            agent.name,
            failing,
            [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "exit 3"]}],
            kind="htcondor",
        ),
    )
    await eventually(lambda: _phase(kube, name, "Running"), timeout=90, what="Running")
    await eventually(lambda: _phase(kube, failing, "Failed"), timeout=90, what="Failed")
    pod = await kube.get(f"/api/v1/namespaces/{NS}/pods/{failing}")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")

    expected = f"from-cms3cr3tfrom-init\n{hostile}|{hostile}"  # the files end without a newline

    seen = []

    async def logs():
        done = await asyncio.to_thread(kubectl, testbed, "logs", name, "-c", "main")
        seen.append(done.stdout + done.stderr)
        return done.stdout == expected

    try:
        await eventually(logs, timeout=60, what="kubectl logs")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; kubectl logs said {seen[-1:]!r}") from None
    before = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    submitted = len(_submissions(agent))
    assert submitted == 2

    agent.stop(signal.SIGKILL)
    agent.start()
    await eventually(lambda: node_ready(kube, agent.name), timeout=40, what="Ready again")
    await asyncio.sleep(3)
    after = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    assert after["status"]["phase"] == "Running"
    ids = [c["containerID"] for c in after["status"]["containerStatuses"]]
    assert ids == [c["containerID"] for c in before["status"]["containerStatuses"]]
    assert len(_submissions(agent)) == submitted  # adopted: no second submission

    deleted = await asyncio.to_thread(
        kubectl, testbed, "delete", "pod", name, "--grace-period=3", "--wait=true", timeout=90
    )
    assert deleted.returncode == 0, deleted.stderr
    from vkpy.backends.htcondor.build import build_htcondor_backend
    from vkpy.config import HTCondorConfig
    from vkpy.testing.htcondor_config import htcondor_backend_config

    backend = build_htcondor_backend(
        HTCondorConfig.model_validate(htcondor_backend_config(testbed.ssh)), node_name=agent.name
    )
    try:
        answer = await backend.runner.run(queue.condor_q_argv(agent.name))
        assert queue.parse_ads(answer.text) == [] or all(
            ad["VkpyPodUID"] != after["metadata"]["uid"] for ad in queue.parse_ads(answer.text)
        )
    finally:
        await backend.close()
