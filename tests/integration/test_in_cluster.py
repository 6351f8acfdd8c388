"""`vkpy run` as it runs in a pod: in-cluster credentials of the ``vkpy`` ServiceAccount.

The agent gets what a pod gets (KUBERNETES_SERVICE_HOST/PORT, a token of its account
and the cluster CA in a directory, here named by VKPY_SERVICE_ACCOUNT_DIR) and no
kubeconfig; its config is the one manifests/configmap.yaml ships, with the testbed's
Podman as the backend. The test approves the agent's serving CSR as a cluster admin, as
an operator or approver would. Then a whole pod lifecycle (ConfigMap env, Secret volume,
the projected service-account token, Running, Succeeded, kubectl logs through the
apiserver, deletion) must pass with no Forbidden anywhere in the agent's log: the RBAC
in manifests/rbac.yaml is enough. The last test runs the agent as on kind: listening on
0.0.0.0 and advertising another address, which the Node and the certificate follow.
"""

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes_asyncio.client import ApiClient

from vkpy.errors import KubeApiError
from vkpy.kube.client import Kube
from vkpy.testing.waiting import eventually

from .helpers import account_files, events_for, in_cluster_env, kubectl, pod_for, pod_phase

ROOT = Path(__file__).resolve().parents[2]
AGENT = "system:serviceaccount:vkpy:vkpy"
# How a refused API call shows in the agent's log: the apiserver's message for a 403
# always says "forbidden", KubeApiError prints the status after a colon.
REFUSED = re.compile(r"forbidden|unauthorized|: 40[13]\b", re.IGNORECASE)


async def akubectl(testbed, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(kubectl, testbed, *args, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


@pytest.fixture
def account_dir(testbed, agent_account, tmp_path) -> Path:
    """What Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    return account_files(testbed, tmp_path, "vkpy")


def shipped_config() -> dict[str, Any]:
    """The agent config of manifests/configmap.yaml."""
    configmap = yaml.safe_load((ROOT / "manifests/configmap.yaml").read_text())
    document: dict[str, Any] = yaml.safe_load(configmap["data"]["config.yaml"])
    return document


class InClusterAgent:
    """`vkpy run` in its own process with a pod's credentials and the shipped config."""

    def __init__(
        self,
        testbed,
        tmp_path: Path,
        account_dir: Path,
        *,
        config: dict[str, Any],
        env: dict[str, str],
    ) -> None:
        self.name = f"incluster-{uuid.uuid4().hex[:6]}"
        document = shipped_config()
        document["node"]["name"] = self.name
        self.health_port = free_port()
        # Ports the system picks (the agent advertises the one it got); the rest as shipped.
        document["kubelet_api"].update({"port": 0, "health_port": self.health_port})
        document["state_dir"] = str(tmp_path / "agent")
        document["status_poll_seconds"] = 1
        document["lease_renew_seconds"] = 1  # renewals (updates) within the test's seconds
        testbed_podman = yaml.safe_load((testbed.state / "podman.yaml").read_text())
        document["backend"] = {**testbed_podman["backend"], "state_dir": str(tmp_path / "podman")}
        for section, values in config.items():
            document.setdefault(section, {}).update(values)
        self.config = tmp_path / "agent.yaml"
        self.config.write_text(yaml.safe_dump(document))
        self.log = tmp_path / "agent.log"
        self.env = {**in_cluster_env(testbed, account_dir), **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vkpy.cli", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.log.parent,
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return "\n".join(self.text().splitlines()[-30:])


async def node_ready(kube: Kube, name: str) -> bool:
    try:
        node = await kube.get(f"/api/v1/nodes/{name}")
    except Exception:
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def serving_csr(testbed, node: str) -> dict[str, Any] | None:
    listed = await akubectl(testbed, "get", "csr", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    for csr in json.loads(listed.stdout)["items"]:
        if csr["metadata"].get("generateName") == f"{node}-serving-":
            return dict(csr)
    return None


def san_ips(pem: bytes) -> set[str]:
    certificate = x509.load_pem_x509_certificate(pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


@pytest.fixture
async def start_agent(testbed, kube, tmp_path, account_dir) -> AsyncIterator[Any]:
    """Starts an in-cluster agent, approves its serving CSR as an admin, cleans up after."""
    agents: list[InClusterAgent] = []
    csrs: list[str] = []

    async def start(
        *, config: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> tuple[InClusterAgent, dict[str, Any]]:
        agent = InClusterAgent(testbed, tmp_path, account_dir, config=config or {}, env=env or {})
        assert "KUBECONFIG" not in agent.env
        agents.append(agent)
        agent.start()
        try:
            await eventually(lambda: node_ready(kube, agent.name), timeout=60, what="node Ready")
            csr = await eventually(
                lambda: serving_csr(testbed, agent.name), timeout=30, what="the serving CSR"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nagent log:\n{agent.tail()}") from None
        name = csr["metadata"]["name"]
        csrs.append(name)
        assert csr["spec"]["username"] == AGENT  # requested by the agent's own account
        assert csr["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
        approved = await akubectl(testbed, "certificate", "approve", name)
        assert approved.returncode == 0, approved.stderr

        async def issued() -> dict[str, Any] | None:
            current = await kube.get(
                f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
            )
            return current if (current.get("status") or {}).get("certificate") else None

        return agent, await eventually(issued, timeout=60, what="the certificate issued")

    yield start

    for agent in agents:
        agent.stop()
        listing = await kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={agent.name}")
        for pod in listing["items"]:
            meta = pod["metadata"]
            with contextlib.suppress(Exception):
                await kube.delete(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    {"gracePeriodSeconds": 0},
                )
        with contextlib.suppress(Exception):
            await kube.delete(f"/api/v1/nodes/{agent.name}")
        podman_cleanup(testbed, agent.name)
    for name in csrs:
        with contextlib.suppress(Exception):
            await kube.delete(f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}")


def podman(testbed, *args: str) -> str:
    env = {**os.environ, "CONTAINERS_CONF": str(testbed.podman.containers_conf)}
    return subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def podman_cleanup(testbed, node: str) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):
        pods = podman(testbed, "pod", "ps", "-q", "--filter", f"label=vkpy.io/node={node}")
        for pod in pods.split():
            podman(testbed, "pod", "rm", "-f", pod)


@pytest.fixture
async def namespace(testbed, kube) -> AsyncIterator[str]:
    """A namespace of its own, with its default ServiceAccount (pods mount its token)."""
    name = f"vkpy-ic-{uuid.uuid4().hex[:6]}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": name}})

    async def default_account() -> bool:
        try:
            await kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
        except Exception:
            return False
        return True

    await eventually(default_account, timeout=30, what="the default ServiceAccount")
    yield name
    with contextlib.suppress(Exception):
        await kube.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
async def kubelet_reader(testbed, kube, namespace) -> AsyncIterator[str]:
    """A bearer token whose owner may read kubelet APIs (system:kubelet-api-admin)."""
    await kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "reader"}}
    )
    binding = f"{namespace}-reader"
    await kube.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = await akubectl(testbed, "create", "token", "reader", "-n", namespace)
    assert token.returncode == 0, token.stderr
    yield token.stdout.strip()
    with contextlib.suppress(Exception):
        await kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding}")


def kubelet_pods(address: str, port: int, token: str, ca: Path) -> list[str]:
    """GET /pods on the kubelet API as a bearer-token caller, verifying the certificate."""
    request = urllib.request.Request(
        f"https://{address}:{port}/pods", headers={"Authorization": f"Bearer {token}"}
    )
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
        return [p["metadata"]["name"] for p in json.load(response)["items"]]


async def logs(testbed, namespace: str, pod: str) -> str:
    result = await akubectl(testbed, "logs", "-n", namespace, pod)
    return result.stdout if result.returncode == 0 else ""


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (http only)
        return response.status, response.read()


IMAGE = "localhost/busybox:latest"
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


async def test_pod_lifecycle_under_the_service_account(
    testbed, kube, start_agent, namespace, kubelet_reader
):
    # VKPY_NODE__ADVERTISE_ADDRESS is how the Deployment passes the pod IP.
    agent, csr = await start_agent(env={"VKPY_NODE__ADVERTISE_ADDRESS": "127.0.0.3"})
    ns, node = namespace, agent.name
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"

    async def renew_time() -> str | None:
        with contextlib.suppress(KubeApiError):
            return str((await kube.get(lease_path))["spec"]["renewTime"])
        return None

    first_renewal = await eventually(renew_time, timeout=10, what="the node's Lease")
    await kube.create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": "settings"}, "data": {"greeting": "hello from a configmap"}},
    )
    await kube.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "credentials"}, "stringData": {"password": "s3cr3t-value"}},
    )
    once = pod_for(
        node,
        "once",
        [
            {
                "name": "main",
                "image": IMAGE,
                "command": ["sh", "-c"],
                "args": [
                    'echo "GREETING=$GREETING"; echo "secret bytes: $(wc -c < /secret/password)";'
                    f' echo "token bytes: $(wc -c < {TOKEN})"; sleep 2'
                ],
                "env": [
                    {
                        "name": "GREETING",
                        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}},
                    }
                ],
                "volumeMounts": [{"name": "secret", "mountPath": "/secret", "readOnly": True}],
            }
        ],
        kind="podman",
        volumes=[{"name": "secret", "secret": {"secretName": "credentials"}}],
    )
    long = pod_for(
        node,
        "long",
        [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "echo started; sleep 300"]}],
        kind="podman",
    )
    await kube.create(f"/api/v1/namespaces/{ns}/pods", once)
    await kube.create(f"/api/v1/namespaces/{ns}/pods", long)

    async def phase(pod: str, *phases: str) -> bool:
        return await pod_phase(kube, ns, pod) in phases

    await eventually(lambda: phase("long", "Running"), timeout=90, what="long Running")
    await eventually(lambda: phase("once", "Succeeded", "Failed"), timeout=90, what="once done")
    done = await kube.get(f"/api/v1/namespaces/{ns}/pods/once")
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"], indent=1)
    assert done["spec"]["nodeName"] == node  # placed by the real scheduler
    assert done["status"]["hostIP"] == "127.0.0.3"
    # The token came from serviceaccounts/token, the volume in the pod is projected.
    assert any("serviceAccountToken" in str(v.get("projected")) for v in done["spec"]["volumes"])

    # kubectl logs: apiserver -> 127.0.0.3:<port>, certificate from the approved CSR,
    # the caller checked with TokenReview/SubjectAccessReview under the account's RBAC.
    output = await eventually(lambda: logs(testbed, ns, "once"), timeout=60, what="logs")
    assert "GREETING=hello from a configmap" in output
    assert "secret bytes: 12" in output
    token_bytes = int(re.search(r"token bytes: (\d+)", output).group(1))
    assert token_bytes > 100  # a JWT, not an empty file
    assert "started" in await logs(testbed, ns, "long")
    # A bearer-token caller: the agent asks TokenReview, then SubjectAccessReview.
    node_object = await kube.get(f"/api/v1/nodes/{node}")
    port = node_object["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    listed = await asyncio.to_thread(
        kubelet_pods, "127.0.0.3", port, kubelet_reader, testbed.cluster.ca.cert
    )
    assert {"once", "long"} <= set(listed)
    issued = base64.b64decode(csr["status"]["certificate"])
    assert san_ips(issued) == {"127.0.0.3"}

    for pod in ("long", "once"):
        deleted = await akubectl(
            testbed, "delete", "pod", "-n", ns, pod, "--grace-period=3", "--wait=true"
        )
        assert deleted.returncode == 0, deleted.stderr

    async def backend_empty() -> bool:
        # A terminal pod is deleted from the API at once; the backend follows.
        names = await asyncio.to_thread(
            podman, testbed, "ps", "-a", "--filter", f"label=vkpy.io/node={node}", "-q"
        )
        return not names.split()

    await eventually(backend_empty, timeout=30, what="the Podman pods removed")
    reasons = {e["reason"] for e in await events_for(kube, ns, "long")}
    assert {"Started", "Killing"} <= reasons  # events written by the agent's account

    async def renewed() -> bool:
        return await renew_time() not in (None, first_renewal)

    await eventually(renewed, timeout=10, what="a lease renewal")
    assert (await kube.get(lease_path))["spec"]["holderIdentity"] == node
    log = agent.text()
    assert "s3cr3t-value" not in log
    refused = [line for line in log.splitlines() if REFUSED.search(line)]
    assert refused == [], "\n".join(refused)


async def test_the_advertised_address_is_what_the_node_and_its_certificate_name(
    testbed, kube, start_agent, namespace
):
    """As on kind: listen everywhere, advertise the address the apiserver can reach."""
    agent, csr = await start_agent(
        config={
            "node": {"advertise_address": "127.0.0.2"},
            "kubelet_api": {"address": "0.0.0.0"},  # noqa: S104
        }
    )
    node = await kube.get(f"/api/v1/nodes/{agent.name}")
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.0.2"}]
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]

    issued = base64.b64decode(csr["status"]["certificate"])
    assert san_ips(issued) == {"127.0.0.2"}

    async def served() -> set[str] | None:
        try:
            pem = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.2", port))
        except (OSError, ssl.SSLError):
            return None
        ips = san_ips(pem.encode())
        return ips if ips == {"127.0.0.2"} else None

    await eventually(served, timeout=30, what="the issued certificate served on 127.0.0.2")
    # The probes' target: plain HTTP on the shipped health_address (0.0.0.0).
    assert await asyncio.to_thread(get, f"http://127.0.0.2:{agent.health_port}/healthz") == (
        200,
        b"ok",
    )

    pod = pod_for(
        agent.name,
        "talker",
        [
            {
                "name": "main",
                "image": IMAGE,
                "command": ["sh", "-c", "echo via 127.0.0.2; sleep 300"],
            }
        ],
        kind="podman",
    )
    await kube.create(f"/api/v1/namespaces/{namespace}/pods", pod)
    output = await eventually(lambda: logs(testbed, namespace, "talker"), timeout=90, what="logs")
    assert "via 127.0.0.2" in output
    deleted = await akubectl(
        testbed, "delete", "pod", "-n", namespace, "talker", "--grace-period=3", "--wait=true"
    )
    assert deleted.returncode == 0, deleted.stderr
    refused = [line for line in agent.text().splitlines() if REFUSED.search(line)]
    assert refused == [], "\n".join(refused)
