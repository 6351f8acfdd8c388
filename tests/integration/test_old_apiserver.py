"""The older apiserver beside the testbed (``old_apiserver``): its version, its own
objects, and an agent registered against it serving ``kubectl logs`` through it.

Before 1.36 an apiserver speaks only SPDY to kubelets; the streaming tests that need
that run against this one. The apiserver dials the agent's kubelet API with the
testbed's kubelet-client certificate and verifies its serving certificate against the
testbed's CA, so a working ``kubectl logs`` proves it shares the main one's PKI.
"""

import asyncio
import contextlib
import json
import subprocess
import uuid

import pytest
from kubernetes_asyncio import config

from vkpy.agent import Agent
from vkpy.config import load
from vkpy.kube.client import Kube
from vkpy.testing import pki
from vkpy.testing.instant import InstantBackend
from vkpy.testing.kubebinaries import KUBERNETES_VERSION, SPDY_APISERVER_VERSION
from vkpy.testing.oldapiserver import OldApiserver
from vkpy.testing.testbed import Endpoints
from vkpy.testing.waiting import eventually

from .helpers import kubectl, logs_become, node_ready, pod_for, pod_gone

NS = "default"


def old_kubectl(old: OldApiserver, *args: str, stdin: str | None = None):
    return subprocess.run(
        ["kubectl", f"--kubeconfig={old.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
async def old_kube(old_apiserver: OldApiserver):
    api = await config.new_client_from_config(config_file=str(old_apiserver.kubeconfig))
    try:
        yield Kube(api)
    finally:
        await api.close()


def test_it_serves_the_old_version(testbed: Endpoints, old_apiserver: OldApiserver):
    assert old_apiserver.version == SPDY_APISERVER_VERSION
    assert old_apiserver.server != testbed.cluster.server
    # helpers.kubectl uses `.cluster.admin_kubeconfig` of either.
    for target, expected in (
        (old_apiserver, SPDY_APISERVER_VERSION),
        (testbed, KUBERNETES_VERSION),
    ):
        done = kubectl(target, "version", "-o", "json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["serverVersion"]["gitVersion"] == expected


def test_node_and_bound_pod_live_only_in_the_old_apiserver(
    testbed: Endpoints, old_apiserver: OldApiserver
):
    name = f"old-{uuid.uuid4().hex[:6]}"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"nodeName": name, "containers": [{"name": "main", "image": "busybox"}]},
    }
    for document in (node, pod):
        done = old_kubectl(old_apiserver, "create", "-f", "-", stdin=json.dumps(document))
        assert done.returncode == 0, done.stderr
    try:
        got = old_kubectl(old_apiserver, "get", "pod", name, "-n", NS, "-o", "json")
        assert got.returncode == 0, got.stderr
        spec = json.loads(got.stdout)["spec"]
        assert spec["nodeName"] == name
        assert spec["serviceAccountName"] == "default"  # prepared by the fixture
        # Its own etcd prefix: the main apiserver never sees either object.
        assert "NotFound" in kubectl(testbed, "get", "node", name).stderr
        assert "NotFound" in kubectl(testbed, "get", "pod", name, "-n", NS).stderr
    finally:
        # No kubelet will ever confirm the deletion.
        old_kubectl(old_apiserver, "delete", "pod", name, "-n", NS, "--grace-period=0", "--force")
        old_kubectl(old_apiserver, "delete", "node", name)


async def test_agent_registers_and_kubectl_logs_reach_its_kubelet_api(
    testbed: Endpoints, old_apiserver: OldApiserver, old_kube: Kube, tmp_path
):
    name = f"old-instant-{uuid.uuid4().hex[:6]}"
    # No controller-manager signs kubelet-serving CSRs here: the testbed's CA issues
    # the serving certificate the apiserver will verify.
    serving = pki.issue(
        testbed.cluster.ca,
        tmp_path / "serving",
        common_name=f"system:node:{name}",
        organizations=("system:nodes",),
        server=True,
        ip_addresses=("127.0.0.1",),
    )
    kubelet_api = {
        "port": 0,
        "health_port": 0,
        "serving_certificate": "files",
        "cert_file": str(serving.cert),
        "key_file": str(serving.key),
    }
    settings = load(
        None,
        {
            "node": {"name": name},
            "state_dir": str(tmp_path / "agent"),
            "kubelet_api": kubelet_api,
            "lease_renew_seconds": 1,
            "status_poll_seconds": 0.5,
        },
    )
    agent = Agent(settings, old_kube, InstantBackend())
    task = asyncio.create_task(agent.run())
    pod = f"{name}-logs"
    try:
        await eventually(lambda: node_ready(old_kube, name), what="node Ready")
        assert "NotFound" in kubectl(testbed, "get", "node", name).stderr
        manifest = pod_for(name, pod, [{"name": "main", "image": "busybox"}], nodeName=name)
        await old_kube.create(f"/api/v1/namespaces/{NS}/pods", manifest)

        async def running() -> bool:
            got = await old_kube.get(f"/api/v1/namespaces/{NS}/pods/{pod}")
            return (got.get("status") or {}).get("phase") == "Running"

        await eventually(running, what="pod Running")
        uid = (await old_kube.get(f"/api/v1/namespaces/{NS}/pods/{pod}"))["metadata"]["uid"]
        expected = f"instant pod {uid} container main\n"
        await logs_become(old_apiserver.endpoints(testbed), pod, "main", expected)
    finally:
        with contextlib.suppress(Exception):
            await old_kube.delete(f"/api/v1/namespaces/{NS}/pods/{pod}")
        with contextlib.suppress(AssertionError):  # the agent confirms the deletion
            await eventually(lambda: pod_gone(old_kube, NS, pod), what="pod deleted by the agent")
        agent.stop()
        await asyncio.wait_for(task, 10)
        with contextlib.suppress(Exception):
            await old_kube.delete(f"/api/v1/nodes/{name}")
