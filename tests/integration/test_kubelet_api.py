"""The kubelet API against the real control plane.

The apiserver dials the node's InternalIP:daemonEndpoint port with its kubelet client
certificate and verifies the serving certificate against the cluster CA
(``--kubelet-certificate-authority``), so a working ``kubectl logs`` proves that the
certificate obtained through the real kubelet-serving CSR flow (approved here as an
operator would, signed by the real controller-manager) is right. TokenReviews and
SubjectAccessReviews go to the real apiserver and its RBAC. Only the LogReader is a
double: the Podman tests read real container logs.
"""

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes_asyncio.client import ApiClient

from vkpy.backend import LogOptions
from vkpy.config import KubeletApiConfig
from vkpy.errors import KubeApiError, PodNotFound
from vkpy.kube.client import Kube
from vkpy.kubeletapi.auth import WebhookAuth
from vkpy.kubeletapi.certificates import CSRS, CsrCertificate, SelfSignedCertificate
from vkpy.kubeletapi.issuing import key_pem, renewal_time
from vkpy.kubeletapi.server import KubeletApiServer
from vkpy.kubeletapi.tls import ServingTls
from vkpy.testing import pki
from vkpy.testing.testbed import Endpoints
from vkpy.testing.waiting import eventually

NS = "default"
UTC = datetime.UTC
LINES = [b"one\n", b"two\n", b"three\n"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Logs:
    """A LogReader over fixed lines, then lines pushed while following."""

    def __init__(self) -> None:
        self.uids: set[str] = set()
        self.more: asyncio.Queue[bytes] = asyncio.Queue()
        self.opened: list[LogOptions] = []
        self.closed = asyncio.Event()

    def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        self.opened.append(options)
        return self._read(uid, container, options)

    async def _read(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        try:
            if uid not in self.uids or container != "main":
                raise PodNotFound(f"no {container} in {uid}")
            for line in LINES:
                yield line
            while options.follow:
                yield await self.more.get()
        finally:
            self.closed.set()


@dataclass
class Kubelet:
    node: str
    pod: str
    server: KubeletApiServer
    logs: Logs
    tls: ServingTls
    csrs: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server.port}{path}"


async def kubectl(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        "kubectl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def served(port: int, ca: Path) -> x509.Certificate:
    context = ssl.create_default_context(cafile=str(ca))
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return x509.load_der_x509_certificate(der)


def client(ca: Path, cert: pki.KeyPair | None = None) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


async def fetch(
    session: aiohttp.ClientSession, url: str, token: str | None = None, *, method: str = "GET"
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, headers=headers) as response:
        return response.status, await response.text()


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


@pytest.fixture
def ca(testbed: Endpoints) -> pki.KeyPair:
    return testbed.cluster.ca


@pytest.fixture
async def node(kube: Kube) -> AsyncIterator[tuple[str, int]]:
    name, port = f"kapi-{uuid.uuid4().hex[:8]}", free_port()
    await kube.create(
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"type": "virtual-kubelet"}},
            "spec": {
                "taints": [
                    {"key": "virtual-kubelet.io/provider", "value": "test", "effect": "NoSchedule"}
                ]
            },
            "status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "10"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "10"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "test node",
                        "lastHeartbeatTime": datetime.datetime.now(UTC).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                    }
                ],
            },
        },
    )
    yield name, port
    with contextlib.suppress(KubeApiError):
        await kube.delete(f"/api/v1/nodes/{name}")
    for csr in (await kube.get(CSRS)).get("items", []):
        if csr["metadata"]["name"].startswith(f"{name}-serving-"):
            with contextlib.suppress(KubeApiError):
                await kube.delete(f"{CSRS}/{csr['metadata']['name']}")


@pytest.fixture
async def pod(kube: Kube, node: tuple[str, int]) -> AsyncIterator[dict[str, Any]]:
    name = f"logs-{uuid.uuid4().hex[:8]}"
    created = await kube.create(
        f"/api/v1/namespaces/{NS}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": node[0],
                "containers": [
                    {"name": "main", "image": "localhost/busybox:latest"},
                    {"name": "side", "image": "localhost/busybox:latest"},
                ],
                "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            },
        },
    )
    yield created
    with contextlib.suppress(KubeApiError):
        await kube.delete(f"/api/v1/namespaces/{NS}/pods/{name}", {"gracePeriodSeconds": 0})


async def serve(
    kube: Kube, node: tuple[str, int], pod: dict[str, Any], tls: ServingTls
) -> tuple[KubeletApiServer, Logs]:
    logs = Logs()
    logs.uids.add(pod["metadata"]["uid"])
    pods = {(NS, pod["metadata"]["name"]): pod}
    server = KubeletApiServer(
        node_name=node[0],
        config=KubeletApiConfig(port=node[1], health_port=free_port()),
        tls=tls,
        auth=WebhookAuth(kube, node_name=node[0], denied_ttl=0.5),
        find_pod=lambda namespace, name: pods.get((namespace, name)),
        list_pods=lambda: list(pods.values()),
        logs=logs,
    )
    await server.start()
    return server, logs


async def approve_pending(source: CsrCertificate, csrs: list[str]) -> None:
    """Approve the source's CSR as an operator does, with kubectl."""
    name = await eventually(lambda: _pending(source), timeout=30, what="a pending CSR")
    csrs.append(name)
    code, _out, err = await kubectl("certificate", "approve", name)
    assert code == 0, err


async def _pending(source: CsrCertificate) -> str | None:
    return source.pending


@pytest.fixture
async def kubelet(kube, node, pod, ca, tmp_path) -> AsyncIterator[Kubelet]:
    source = CsrCertificate(
        kube,
        node_name=node[0],
        ip_addresses=["127.0.0.1"],
        state_dir=tmp_path / "state",
        client_ca=ca.cert.read_bytes(),
        poll_seconds=0.2,
    )
    task = asyncio.create_task(source.run())
    server, logs = await serve(kube, node, pod, source)
    csrs: list[str] = []
    try:
        await approve_pending(source, csrs)
        await asyncio.wait_for(source.wait_ready(), 30)
        yield Kubelet(node[0], pod["metadata"]["name"], server, logs, source, csrs)
    finally:
        task.cancel()
        await server.close()


# ---------------------------------------------------------------- certificate + kubectl logs


async def test_csr_certificate_is_signed_by_the_cluster_and_verified_by_the_apiserver(
    kubelet, kube, ca
):
    csr = await kube.get(f"{CSRS}/{kubelet.csrs[0]}")
    assert csr["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
    assert sorted(csr["spec"]["usages"]) == ["digital signature", "server auth"]
    assert {c["type"] for c in csr["status"]["conditions"]} == {"Approved"}
    cert = await served(kubelet.server.port, ca.cert)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert.read_bytes()))
    assert cert.subject.rfc4514_string() == f"CN=system:node:{kubelet.node},O=system:nodes"

    code, out, err = await kubectl("logs", "-n", NS, kubelet.pod)
    assert code == 0, err
    assert out == "one\ntwo\nthree\n"


async def test_kubectl_log_options_reach_the_reader(kubelet):
    code, _out, err = await kubectl(
        "logs",
        "-n",
        NS,
        kubelet.pod,
        "--tail=2",
        "--timestamps",
        "--limit-bytes=100",
        "--since-time=2026-01-02T03:04:05Z",
    )
    assert code == 0, err
    assert kubelet.logs.opened[-1] == LogOptions(
        tail_lines=2,
        timestamps=True,
        limit_bytes=100,
        since=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    before = datetime.datetime.now(UTC)
    code, _out, err = await kubectl("logs", "-n", NS, kubelet.pod, "--since=5m", "--previous")
    assert code == 0, err
    options = kubelet.logs.opened[-1]
    assert options.previous
    assert abs((before - datetime.timedelta(minutes=5) - options.since).total_seconds()) < 5
    code, out, err = await kubectl("logs", "-n", NS, kubelet.pod, "--limit-bytes=6")
    assert (code, out) == (0, "one\ntw")


async def test_kubectl_logs_follow_streams_until_kubectl_goes(kubelet):
    process = await asyncio.create_subprocess_exec(
        "kubectl", "logs", "-f", "-n", NS, kubelet.pod, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        for line in LINES:
            assert await asyncio.wait_for(process.stdout.readline(), 15) == line
        kubelet.logs.more.put_nowait(b"four\n")
        assert await asyncio.wait_for(process.stdout.readline(), 15) == b"four\n"
        kubelet.logs.more.put_nowait(b"five\n")
        assert await asyncio.wait_for(process.stdout.readline(), 15) == b"five\n"
        assert not kubelet.logs.closed.is_set()
    finally:
        process.terminate()
        await process.wait()
    # The apiserver drops its request to the node when kubectl goes: the reader is closed.
    await asyncio.wait_for(kubelet.logs.closed.wait(), 15)


async def test_a_container_the_backend_does_not_know_is_a_404_kubectl_shows(kubelet):
    # "side" is in the pod's spec, so the apiserver passes the request on; the reader
    # has no such container and raises PodNotFound, which the node answers with 404
    # (the apiserver turns a node's 404 into its own NotFound, without the body).
    code, _out, err = await kubectl("logs", "-n", NS, kubelet.pod, "-c", "side")
    assert code != 0
    assert "(NotFound)" in err, err
    assert kubelet.logs.opened  # the request did reach the node


# ---------------------------------------------------------------- authentication, authorization


async def test_anonymous_is_401(kubelet, ca):
    async with client(ca.cert) as session:
        assert await fetch(session, kubelet.url("/pods")) == (401, "Unauthorized")
        assert await fetch(session, kubelet.url("/healthz")) == (401, "Unauthorized")
        exec_url = kubelet.url(f"/exec/{NS}/{kubelet.pod}/main?command=true&output=1")
        assert await fetch(session, exec_url, method="POST") == (401, "Unauthorized")
        assert await fetch(session, exec_url.replace("/exec/", "/portForward/")) == (
            401,
            "Unauthorized",
        )
        assert await fetch(session, kubelet.url("/pods"), token="not-a-token") == (
            401,
            "Unauthorized",
        )


async def test_service_account_needs_nodes_proxy(kubelet, kube, ca):
    suffix = uuid.uuid4().hex[:8]
    account, role = f"kapi-sa-{suffix}", f"kapi-proxy-{suffix}"
    await kube.create(
        f"/api/v1/namespaces/{NS}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    try:
        issued = await kube.create(
            f"/api/v1/namespaces/{NS}/serviceaccounts/{account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 600},
            },
        )
        token = issued["status"]["token"]
        user = f"system:serviceaccount:{NS}:{account}"
        logs = kubelet.url(f"/containerLogs/{NS}/{kubelet.pod}/main")
        async with client(ca.cert) as session:
            status, text = await fetch(session, kubelet.url("/pods"), token)
            assert (status, text) == (
                403,
                f"Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[pods proxy])\n",
            )
            assert (await fetch(session, logs, token))[0] == 403

            await kube.create(
                "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": role},
                    "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}],
                },
            )
            await kube.create(
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": role},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": role,
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NS}],
                },
            )

            async def allowed() -> bool:
                return (await fetch(session, logs, token)) == (200, "one\ntwo\nthree\n")

            await eventually(allowed, timeout=15, what="logs allowed after the grant")
            status, text = await fetch(session, kubelet.url("/pods"), token)
            assert status == 200
            assert '"kind": "PodList"' in text
            # nodes/proxy does not grant nodes/metrics: the kubelet's mapping, checked by RBAC.
            status, text = await fetch(session, kubelet.url("/metrics"), token)
            assert (status, "subresource(s)=[metrics]" in text) == (403, True)
            # exec, attach and port-forward by POST need nodes/proxy create, not get.
            for path in (
                f"/exec/{NS}/{kubelet.pod}/main?command=true&output=1",
                f"/attach/{NS}/{kubelet.pod}/main?output=1",
                f"/portForward/{NS}/{kubelet.pod}",
            ):
                status, text = await fetch(session, kubelet.url(path), token, method="POST")
                assert (status, "verb=create" in text and "[proxy]" in text) == (403, True), text
    finally:
        for path in (
            f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{role}",
            f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}",
            f"/api/v1/namespaces/{NS}/serviceaccounts/{account}",
        ):
            with contextlib.suppress(KubeApiError):
                await kube.delete(path)


async def test_client_certificates_from_the_cluster_ca(kubelet, ca, tmp_path):
    masters = pki.issue(
        ca,
        tmp_path / "masters",
        common_name="kapi-admin",
        organizations=("system:masters",),
        client=True,
    )
    nobody = pki.issue(ca, tmp_path / "nobody", common_name="kapi-nobody", client=True)
    async with client(ca.cert, masters) as session:
        status, text = await fetch(session, kubelet.url("/pods"))
        assert status == 200
        assert kubelet.pod in text
        status, text = await fetch(session, kubelet.url("/metrics"))
        assert (status, "vkpy_kubelet_api_requests_total" in text) == (200, True)
    async with client(ca.cert, nobody) as session:
        status, text = await fetch(session, kubelet.url("/pods"))
        assert status == 403
        assert text.startswith("Forbidden (user=kapi-nobody, verb=get")
    stranger_ca = pki.create_ca(tmp_path / "other", "stranger-ca")
    stranger = pki.issue(
        stranger_ca,
        tmp_path / "stranger",
        common_name="kapi-admin",
        organizations=("system:masters",),
        client=True,
    )
    async with client(ca.cert, stranger) as session:
        with pytest.raises(aiohttp.ClientError):
            await fetch(session, kubelet.url("/pods"))


async def test_health_port_needs_no_credentials(kubelet):
    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{kubelet.server.health_port}"
        assert await fetch(session, f"{base}/healthz") == (200, "ok")
        status, text = await fetch(session, f"{base}/metrics")
        assert status == 200
        assert 'vkpy_kubelet_api_requests_total{code="401",path="pods"}' in text


# ---------------------------------------------------------------- renewal, denial, self-signed


async def test_renewal_swaps_the_certificate_under_the_listener(kube, node, pod, ca, tmp_path):
    """A stored certificate at 80 % of its life is replaced through a CSR the agent
    approves itself; the listener keeps its port and serves the new one."""
    state = tmp_path / "state"
    now = datetime.datetime.now(UTC)
    short = short_lived(ca, node[0], not_before=now - datetime.timedelta(seconds=8), lifetime=20)
    state.mkdir()
    stored = state / "kubelet-server-current.pem"
    stored.write_bytes(short)
    stored.chmod(0o600)
    source = CsrCertificate(
        kube,
        node_name=node[0],
        ip_addresses=["127.0.0.1"],
        state_dir=state,
        client_ca=ca.cert.read_bytes(),
        approve_own=True,
        expiration_seconds=600,
        poll_seconds=0.2,
    )
    assert source.load_existing()
    old = source.certificate
    assert source.renew_at == old.not_valid_before_utc + datetime.timedelta(seconds=16)
    server, _logs = await serve(kube, node, pod, source)
    task = asyncio.create_task(source.run())
    try:
        assert (await served(server.port, ca.cert)).serial_number == old.serial_number

        async def renewed() -> bool:
            return (await served(server.port, ca.cert)).serial_number != old.serial_number

        await eventually(renewed, timeout=40, what="the renewed certificate")
        new = await served(server.port, ca.cert)
        assert new.serial_number == source.certificate.serial_number
        lifetime = (new.not_valid_after_utc - datetime.datetime.now(UTC)).total_seconds()
        assert 560 < lifetime <= 600  # expirationSeconds was honoured by the real signer
        assert source.renew_at == renewal_time(new)
        assert (
            source.renew_at
            == new.not_valid_before_utc + (new.not_valid_after_utc - new.not_valid_before_utc) * 0.8
        )
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert (
            x509.load_pem_x509_certificates(stored.read_bytes())[0].serial_number
            == new.serial_number
        )
        code, out, err = await kubectl("logs", "-n", NS, pod["metadata"]["name"])
        assert (code, out) == (0, "one\ntwo\nthree\n"), err
    finally:
        task.cancel()
        await server.close()


def short_lived(
    ca: pki.KeyPair, node: str, *, not_before: datetime.datetime, lifetime: int
) -> bytes:
    """A serving certificate from the cluster CA that lives ``lifetime`` seconds."""
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(seconds=lifetime))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key_pem(key)


async def test_a_denied_csr_is_replaced_by_a_new_one(kube, node, ca, tmp_path):
    source = CsrCertificate(
        kube,
        node_name=node[0],
        ip_addresses=["127.0.0.1"],
        state_dir=tmp_path / "state",
        client_ca=ca.cert.read_bytes(),
        poll_seconds=0.2,
        retry_seconds=0.5,
    )
    task = asyncio.create_task(source.run())
    try:
        first = await eventually(lambda: _pending(source), timeout=30, what="a first CSR")
        code, _out, err = await kubectl("certificate", "deny", first)
        assert code == 0, err
        second = await eventually(
            lambda: _second(source, first), timeout=30, what="a second CSR after the denial"
        )
        assert source.certificate is None
        code, _out, err = await kubectl("certificate", "approve", second)
        assert code == 0, err
        await asyncio.wait_for(source.wait_ready(), 30)
    finally:
        task.cancel()


async def _second(source: CsrCertificate, first: str) -> str | None:
    return source.pending if source.pending not in (None, first) else None


async def test_a_self_signed_certificate_fails_the_apiservers_verification(
    kube, node, pod, tmp_path
):
    source = SelfSignedCertificate(
        node_name=node[0],
        ip_addresses=["127.0.0.1"],
        dns_names=[],
        state_dir=tmp_path,
        client_ca=None,
    )
    task = asyncio.create_task(source.run())
    server, _logs = await serve(kube, node, pod, source)
    try:
        await asyncio.wait_for(source.wait_ready(), 10)
        code, _out, err = await kubectl("logs", "-n", NS, pod["metadata"]["name"])
        assert code != 0
        assert "x509" in err or "certificate" in err, err
    finally:
        task.cancel()
        await server.close()
