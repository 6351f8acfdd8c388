"""`vkpy operator` on the real control plane: VirtualNodes made from the testbed's own
agent configs (Podman, Slurm, HTCondor stand-in) become Ready Nodes that run pods;
spec changes, both delete policies, a broken node, a kill -9 of the operator, and two
replicas under leader election.

The operator runs as it runs in a pod: in-cluster credentials of the ``vkpy-operator``
ServiceAccount of manifests/operator/rbac.yaml and no kubeconfig, so every test proves
that RBAC too; a refused API call anywhere in its log fails the test.
"""

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import ApiClient

from vkpy.errors import KubeApiError
from vkpy.kube.client import Kube
from vkpy.operator.crd import GROUP, PLURAL, VERSION
from vkpy.testing.virtualnodes import spec_from_config, ssh_secret, virtual_node
from vkpy.testing.waiting import eventually

from .helpers import (
    account_files,
    events_for,
    in_cluster_env,
    kubectl,
    node_ready,
    pod_for,
    pod_phase,
)

IMAGE = "localhost/busybox:latest"
NS = "default"
VN_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
PORTS = "10420-10439"
# The apiserver's message for a 403 says "forbidden"; KubeApiError prints the status.
REFUSED = re.compile(r"forbidden|unauthorized|: 40[13]\b", re.IGNORECASE)


class OperatorProcess:
    def __init__(
        self,
        testbed: Any,
        tmp_path: Path,
        account: Path,
        *,
        name: str = "operator",
        ports: str = PORTS,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.state = tmp_path / name
        self.log = tmp_path / f"{name}.log"
        self.ports = ports
        self.extra = extra
        self.env = in_cluster_env(testbed, account)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "vkpy.cli", "operator", "--namespace", NS]
        argv += ["--kubelet-port-range", self.ports, "--state-dir", str(self.state)]
        argv += ["--status-seconds", "1", *self.extra]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(40)

    def tail(self) -> str:
        return "\n".join(self.text().splitlines()[-40:])

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def refused(self) -> list[str]:
        return [line for line in self.text().splitlines() if REFUSED.search(line)]


@pytest.fixture(scope="module")
def operator_account(testbed, agent_account, crd_installed) -> Iterator[None]:
    """The CRD and manifests/operator/rbac.yaml, applied for real (the node rules are
    agent_account's). The testbed has no approver for kubelet serving certificates, so
    the nodes approve their own, as the optional manifest allows, for this module only."""
    rbac = ("-f", "manifests/operator/rbac.yaml")
    approver = ("-f", "manifests/operator/csr-approver-rbac.yaml")
    done = kubectl(testbed, "apply", *rbac, *approver)
    assert done.returncode == 0, done.stderr
    yield
    kubectl(testbed, "delete", "--ignore-not-found", *approver)


@pytest.fixture
def account(testbed, operator_account, tmp_path) -> Path:
    """What Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    return account_files(testbed, tmp_path, "vkpy-operator")


@pytest.fixture(scope="module")
def crd_installed(testbed) -> None:
    done = kubectl(testbed, "apply", "-f", "manifests/operator/virtualnode-crd.yaml")
    assert done.returncode == 0, done.stderr
    done = kubectl(testbed, "wait", "--for=condition=Established", "crd/virtualnodes.vkpy.io")
    assert done.returncode == 0, done.stderr


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


async def ssh_secret_installed(testbed, login_user, kube) -> None:
    secret = ssh_secret(testbed.ssh.client_key, testbed.ssh.known_hosts)
    with contextlib.suppress(KubeApiError):
        await kube.delete(f"/api/v1/namespaces/{NS}/secrets/{secret['metadata']['name']}")
    await kube.create(f"/api/v1/namespaces/{NS}/secrets", secret)


async def drain_all(kube: Kube) -> None:
    for item in (await kube.get(VN_PATH))["items"]:  # Drain by default: nodes go too
        with contextlib.suppress(KubeApiError):
            await kube.delete(f"{VN_PATH}/{item['metadata']['name']}")
    with contextlib.suppress(AssertionError):
        await eventually(lambda: no_virtual_nodes(kube), timeout=90, what="VNs gone")


@pytest.fixture
async def operator(testbed, login_user, account, tmp_path, kube) -> AsyncIterator[OperatorProcess]:
    await ssh_secret_installed(testbed, login_user, kube)
    process = OperatorProcess(testbed, tmp_path, account)
    process.start()
    try:
        yield process
    finally:
        await drain_all(kube)
        process.stop()
        print(process.tail())
    assert not process.refused(), "\n".join(process.refused())


async def no_virtual_nodes(kube: Kube) -> bool:
    return not (await kube.get(VN_PATH))["items"]


def spec_of(testbed, config: str, node: str, **changes: Any) -> dict[str, Any]:
    document = yaml.safe_load((testbed.state / config).read_text())
    document["node"]["name"] = node
    spec = spec_from_config(document)
    spec["status_poll_seconds"] = 1
    spec["lease_renew_seconds"] = 2
    for key, value in changes.items():
        spec[key] = value
    return spec


async def create(kube: Kube, name: str, spec: dict[str, Any]) -> None:
    await kube.create(VN_PATH, virtual_node(name, spec))


async def condition(kube: Kube, name: str, kind: str = "Ready") -> dict[str, Any]:
    vn = await kube.get(f"{VN_PATH}/{name}")
    for item in (vn.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return item
    return {}


async def ready(kube: Kube, operator: OperatorProcess, node: str, timeout: float = 90) -> None:
    try:
        await eventually(lambda: node_ready(kube, node), timeout=timeout, what=f"{node} Ready")
    except AssertionError:
        raise AssertionError(f"{node} never Ready:\n{operator.tail()}") from None


def sleeper(node: str, name: str, kind: str, seconds: int = 600) -> dict[str, Any]:
    container = {"name": "main", "image": IMAGE, "command": ["sleep", str(seconds)]}
    return pod_for(node, name, [container], kind=kind)


async def running_pod(kube: Kube, name: str) -> dict[str, Any]:
    async def phase() -> str | None:
        return await pod_phase(kube, NS, name)

    await eventually(phase, until=lambda p: p == "Running", timeout=90, what=f"{name} Running")
    return await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")


def started(pod: dict[str, Any]) -> tuple[str, int]:
    (status,) = pod["status"]["containerStatuses"]
    return status["containerID"], status["restartCount"]


async def test_three_virtual_nodes_run_a_pod_each(testbed, operator, kube):
    suffix = uuid.uuid4().hex[:5]
    nodes = {
        "podman": (f"op-podman-{suffix}", "podman.yaml"),
        "slurm": (f"op-slurm-{suffix}", "slurm.yaml"),
        "htcondor": (f"op-condor-{suffix}", "htcondor.yaml"),
    }
    for node, config in nodes.values():
        await create(kube, node, spec_of(testbed, config, node))
    for node, _ in nodes.values():
        await ready(kube, operator, node)
    for kind, (node, _) in nodes.items():
        command = ["sh", "-c", f"echo hello from {kind}"]
        pod = pod_for(
            node, f"{node}-hello", [{"name": "main", "image": IMAGE, "command": command}], kind=kind
        )
        await kube.create(f"/api/v1/namespaces/{NS}/pods", pod)
    for node, _ in nodes.values():

        async def phase(name: str = f"{node}-hello") -> str | None:
            return await pod_phase(kube, NS, name)

        await eventually(phase, until=lambda p: p == "Succeeded", timeout=120, what=f"{node} pod")
    for node, _ in nodes.values():
        status = (await kube.get(f"{VN_PATH}/{node}"))["status"]
        assert status["nodeName"] == node
        assert status["nodeUID"] == (await kube.get(f"/api/v1/nodes/{node}"))["metadata"]["uid"]
        assert (await condition(kube, node))["status"] == "True"
        assert (await condition(kube, node, "BackendHealthy"))["status"] == "True"
    listed = kubectl(testbed, "get", "virtualnodes", "-n", NS)
    assert f"op-slurm-{suffix}" in listed.stdout and "slurm" in listed.stdout, listed


async def test_a_label_change_reaches_the_node_and_the_pod_keeps_running(testbed, operator, kube):
    node = f"op-label-{uuid.uuid4().hex[:5]}"
    await create(kube, node, spec_of(testbed, "podman.yaml", node))
    await ready(kube, operator, node)
    await kube.create(f"/api/v1/namespaces/{NS}/pods", sleeper(node, f"{node}-sleep", "podman"))
    before = started(await running_pod(kube, f"{node}-sleep"))
    patch = {"spec": {"node": {"labels": {"tier": "gold"}}}}
    await kube.merge_patch(f"{VN_PATH}/{node}", patch)

    async def labelled() -> bool:
        return (await kube.get(f"/api/v1/nodes/{node}"))["metadata"]["labels"].get("tier") == "gold"

    await eventually(labelled, timeout=60, what="the label on the Node")
    await ready(kube, operator, node)
    await asyncio.sleep(3)  # the new agent has adopted the pod and reported it
    after = await kube.get(f"/api/v1/namespaces/{NS}/pods/{node}-sleep")
    assert after["status"]["phase"] == "Running"
    assert started(after) == before, "the pod was restarted"
    assert "AgentStarted" in [e["reason"] for e in await events_for(kube, NS, node)]


async def job_state(testbed, job_id: str) -> str:
    """The job's state in squeue, or "" when it has left the queue."""
    done = await asyncio.to_thread(
        subprocess.run,
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_CONF": str(testbed.slurm.conf)},
    )
    return done.stdout.strip()


async def test_orphan_keeps_the_job_for_the_next_virtual_node_and_drain_ends_it(
    testbed, operator, kube
):
    node = f"op-orphan-{uuid.uuid4().hex[:5]}"
    await create(kube, node, spec_of(testbed, "slurm.yaml", node, on_delete="Orphan"))
    await ready(kube, operator, node)
    await kube.create(f"/api/v1/namespaces/{NS}/pods", sleeper(node, f"{node}-job", "slurm"))
    container = started(await running_pod(kube, f"{node}-job"))[0]
    job_id = container.removeprefix("slurm://").split("/")[0]
    assert await job_state(testbed, job_id) == "RUNNING"
    await kube.delete(f"{VN_PATH}/{node}")
    await eventually(lambda: no_such(kube, f"{VN_PATH}/{node}"), timeout=30, what="VN gone")
    assert (await kube.get(f"/api/v1/nodes/{node}"))["metadata"]["name"] == node  # kept
    assert await job_state(testbed, job_id) == "RUNNING"
    # A new VirtualNode for the same node adopts the job: same container, not restarted.
    await create(kube, node, spec_of(testbed, "slurm.yaml", node))  # Drain from here on
    await ready(kube, operator, node)
    await asyncio.sleep(3)
    again = await kube.get(f"/api/v1/namespaces/{NS}/pods/{node}-job")
    assert again["status"]["phase"] == "Running" and started(again) == (container, 0)
    await kube.delete(f"{VN_PATH}/{node}")
    await eventually(lambda: no_such(kube, f"/api/v1/nodes/{node}"), timeout=90, what="Node gone")
    pod_path = f"/api/v1/namespaces/{NS}/pods/{node}-job"
    await eventually(lambda: no_such(kube, pod_path), timeout=30, what="the pod gone")

    await eventually(
        lambda: job_state(testbed, job_id),
        until=lambda state: state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"),
        timeout=30,
        what=f"job {job_id} to end",
    )


async def no_such(kube: Kube, path: str) -> bool:
    try:
        await kube.get(path)
    except KubeApiError as exc:
        return exc.status == 404
    return False


async def test_an_unreachable_login_node_is_not_ready_and_others_work(testbed, operator, kube):
    suffix = uuid.uuid4().hex[:5]
    broken, fine = f"op-down-{suffix}", f"op-up-{suffix}"
    spec = spec_of(testbed, "slurm.yaml", broken)
    spec["backend"]["ssh"]["port"] = 1  # nothing listens there
    spec["backend"]["ssh"]["connect_timeout_seconds"] = 2
    await create(kube, broken, spec)
    await create(kube, fine, spec_of(testbed, "podman.yaml", fine))
    await ready(kube, operator, fine)

    async def reason() -> str:
        return (await condition(kube, broken)).get("reason", "")

    await eventually(reason, until=lambda r: r == "BackendUnhealthy", timeout=60, what="reason")
    assert (await condition(kube, broken, "BackendHealthy"))["status"] == "False"
    node = await kube.get(f"/api/v1/nodes/{broken}")
    ready_status = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready_status["status"] == "False"
    await kube.create(f"/api/v1/namespaces/{NS}/pods", sleeper(fine, f"{fine}-ok", "podman", 1))

    async def done() -> str | None:
        return await pod_phase(kube, NS, f"{fine}-ok")

    await eventually(
        done, until=lambda p: p == "Succeeded", timeout=60, what="the other node's pod"
    )


async def test_an_invalid_spec_shows_in_status_and_events(testbed, operator, kube):
    name = f"op-bad-{uuid.uuid4().hex[:5]}"
    # The CRD's schema refuses a wrong type at once...
    with pytest.raises(KubeApiError, match="partition in body must be of type string"):
        await create(kube, name, {"backend": {"kind": "slurm", "partition": ["a", "b"]}})
    # ...and pydantic what one schema for every backend kind cannot: a Slurm field on Podman.
    await create(kube, name, {"backend": {"kind": "podman", "partition": "debug"}})

    async def reason() -> str:
        return (await condition(kube, name)).get("reason", "")

    await eventually(reason, until=lambda r: r == "InvalidSpec", timeout=30, what="InvalidSpec")
    assert "partition" in (await condition(kube, name))["message"]
    events = await events_for(kube, NS, name)
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events), events


async def sleeping_nodes(
    testbed, kube: Kube, operator: OperatorProcess, prefix: str
) -> dict[str, tuple[str, int]]:
    """A Podman and a Slurm node with a running sleeper each: its container, by node."""
    suffix = uuid.uuid4().hex[:5]
    nodes = {"podman": f"{prefix}p-{suffix}", "slurm": f"{prefix}s-{suffix}"}
    for kind, node in nodes.items():
        await create(kube, node, spec_of(testbed, f"{kind}.yaml", node))
    for kind, node in nodes.items():
        await ready(kube, operator, node)
        await kube.create(f"/api/v1/namespaces/{NS}/pods", sleeper(node, f"{node}-p", kind))
    return {node: started(await running_pod(kube, f"{node}-p")) for node in nodes.values()}


async def adopted(kube: Kube, operator: OperatorProcess, before: dict[str, tuple[str, int]]):
    """Every node Ready again under ``operator``, its pod running in the same container."""
    for node in before:
        await ready(kube, operator, node)
    await asyncio.sleep(3)
    for node, container in before.items():
        pod = await kube.get(f"/api/v1/namespaces/{NS}/pods/{node}-p")
        assert pod["status"]["phase"] == "Running"
        assert started(pod) == container, f"{node}: started again"


async def test_kill_9_and_restart_adopts_every_pod(testbed, operator, kube):
    before = await sleeping_nodes(testbed, kube, operator, "op-k")
    operator.stop(signal.SIGKILL)
    operator.start()
    await asyncio.sleep(5)
    await adopted(kube, operator, before)


LEASE = "/apis/coordination.k8s.io/v1/namespaces/vkpy/leases/vkpy-operator"


async def lease_holder(kube: Kube) -> str | None:
    try:
        return (await kube.get(LEASE)).get("spec", {}).get("holderIdentity")
    except KubeApiError:
        return None


async def test_two_replicas_one_serves_and_a_kill_9_hands_over(
    testbed, login_user, account, tmp_path, kube
):
    await ssh_secret_installed(testbed, login_user, kube)
    with contextlib.suppress(KubeApiError):  # a lease left by an earlier run would delay us
        await kube.delete(LEASE)
    elect = ("--leader-elect",)
    first = OperatorProcess(testbed, tmp_path, account, name="first", extra=elect)
    second = OperatorProcess(
        testbed, tmp_path, account, name="second", ports="10440-10459", extra=elect
    )
    first.start()
    try:
        await eventually(lambda: "leading:" in first.text(), timeout=60, what="first leads")
        second.start()
        await eventually(lambda: "waiting to lead" in second.text(), timeout=60, what="standby")
        before = await sleeping_nodes(testbed, kube, first, "op-h")
        assert "leading:" not in second.text(), "a standby served while the leader ran"
        assert await lease_holder(kube) in first.text()

        killed = time.monotonic()
        first.stop(signal.SIGKILL)
        await eventually(lambda: "leading:" in second.text(), timeout=60, what="second leads")
        print(f"handover after kill -9: {time.monotonic() - killed:.1f} s")
        await adopted(kube, second, before)

        await drain_all(kube)
        second.stop()  # SIGTERM: the leader lets its Lease go for the next replica
        assert second.process is not None and second.process.returncode == 0, second.tail()
        assert not await lease_holder(kube)
    finally:
        await drain_all(kube)
        for replica in (first, second):
            replica.stop()
            print(replica.tail())
    refused = first.refused() + second.refused()
    assert not refused, "\n".join(refused)
