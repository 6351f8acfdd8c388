"""The kubelet API server on real loopback sockets, with TLS from a throw-away CA.

Authentication is a test double here (tests/unit/test_kubelet_api_auth.py and the
integration tests cover the real one); so is the LogReader.
"""

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yarl
from aiohttp import web

from vkpy.backend import LogOptions
from vkpy.config import KubeletApiConfig
from vkpy.errors import BackendUnavailable, PodNotFound
from vkpy.kubeletapi.auth import User
from vkpy.kubeletapi.server import KubeletApiServer
from vkpy.kubeletapi.tls import ServingTls
from vkpy.testing import pki

POD = {
    "metadata": {"namespace": "ns", "name": "web", "uid": "uid-web"},
    "spec": {
        "containers": [{"name": "main"}, {"name": "side"}],
        "initContainers": [{"name": "init"}],
    },
}
GONE = {"metadata": {"namespace": "ns", "name": "gone", "uid": "uid-gone"}, "spec": POD["spec"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Gate:
    """Lets everybody in, or nobody (403)."""

    def __init__(self) -> None:
        self.allow = True
        self.checked: list[str] = []

    async def check(self, request: web.BaseRequest) -> User:
        self.checked.append(request.path)
        if not self.allow:
            raise web.HTTPForbidden(text="Forbidden (test)")
        return User("tester")


class Logs:
    """A LogReader: fixed lines per (uid, container), then lines pushed while following."""

    def __init__(self) -> None:
        self.lines = {("uid-web", "main"): [b"one\n", b"two\n", b"three\n"]}
        self.more: asyncio.Queue[bytes] = asyncio.Queue()
        self.opened: list[tuple[str, str, LogOptions]] = []
        self.closed = asyncio.Event()
        self.unavailable = False

    def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        self.opened.append((uid, container, options))
        return self._read(uid, container, options)

    async def _read(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        try:
            if self.unavailable:
                raise BackendUnavailable("podman is restarting")
            if (uid, container) not in self.lines:
                raise PodNotFound(f"no container {container} in pod {uid}")
            for line in self.lines[(uid, container)]:
                yield line
            while options.follow:
                yield await self.more.get()
        finally:
            self.closed.set()


@pytest.fixture
def ca(tmp_path: Path) -> pki.KeyPair:
    return pki.create_ca(tmp_path, "test-ca")


@pytest.fixture
def tls(ca: pki.KeyPair, tmp_path: Path) -> ServingTls:
    serving = pki.issue(
        ca,
        tmp_path / "serving",
        common_name="system:node:n",
        server=True,
        ip_addresses=("127.0.0.1",),
    )
    provider = ServingTls(ca.cert.read_bytes())
    provider.install(serving.cert, serving.key)
    return provider


@pytest.fixture
def client_tls(ca: pki.KeyPair) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert))


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
async def server(tls: ServingTls, gate: Gate, logs: Logs) -> AsyncIterator[KubeletApiServer]:
    pods = {("ns", "web"): POD, ("ns", "gone"): GONE}
    api = KubeletApiServer(
        node_name="n",
        config=KubeletApiConfig(port=free_port(), health_port=free_port()),
        tls=tls,
        auth=gate,
        find_pod=lambda namespace, name: pods.get((namespace, name)),
        list_pods=lambda: list(pods.values()),
        logs=logs,
    )
    await api.start()
    yield api
    await api.close()


@pytest.fixture
async def http(client_tls: ssl.SSLContext) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as session:
        yield session


def url(server: KubeletApiServer, path: str) -> str:
    return f"https://127.0.0.1:{server.port}{path}"


async def get(http: aiohttp.ClientSession, server: KubeletApiServer, path: str) -> tuple[int, str]:
    async with http.get(url(server, path)) as response:
        return response.status, await response.text()


# ---------------------------------------------------------------- logs


async def test_logs_are_served_with_the_options_parsed(server, http, logs, gate):
    async with http.get(
        url(server, "/containerLogs/ns/web/main?tailLines=3&timestamps=true")
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain"
        assert await response.read() == b"one\ntwo\nthree\n"
    assert logs.opened == [("uid-web", "main", LogOptions(tail_lines=3, timestamps=True))]
    assert gate.checked == ["/containerLogs/ns/web/main"]
    assert logs.closed.is_set()


async def test_limit_bytes_is_enforced_across_chunks(server, http):
    assert await get(http, server, "/containerLogs/ns/web/main?limitBytes=6") == (200, "one\ntw")
    assert await get(http, server, "/containerLogs/ns/web/main?limitBytes=4") == (200, "one\n")


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/containerLogs/ns/nope/main", 404, "pod 'nope' does not exist"),
        ("/containerLogs/other/web/main", 404, "pod 'web' does not exist"),
        ("/containerLogs/ns/web/nope", 404, "container 'nope' not found in pod 'web'"),
        ("/containerLogs/ns/gone/main", 404, "no container main in pod uid-gone"),
        ("/containerLogs/ns/web/main?tailLines=x", 400, "tailLines"),
        ("/containerLogs/ns/web/main?sinceTime=today", 400, "sinceTime"),
        ("/containerLogs/ns/web/main?limitBytes=0", 422, "limitBytes"),
    ],
)
async def test_log_errors(server, http, path, status, message):
    code, text = await get(http, server, path)
    assert (code, message in text) == (status, True), text


@pytest.mark.parametrize(
    "path",
    [
        "/containerLogs/ns/web/../../../etc/passwd",
        "/containerLogs/ns/web/%2e%2e/%2e%2e/etc",
        "/containerLogs/ns/web/..%2f..%2fetc%2fpasswd",
        "/containerLogs/ns/web/main%00",
        "/containerLogs/ns/web%00/main",
        "/containerLogs/ns/../ns/web/main",
        "/containerLogs/%2e%2e/web/main",
        "/containerLogs/ns/web/" + "a" * 5000,
        "/containerLogs/ns/" + "w" * 5000 + "/main",
        "/containerLogs/ns/web/main/extra",
        "/containerLogs/ns/web/%E2%80%AEniam",
    ],
)
async def test_odd_names_reach_no_log_and_no_file(server, http, logs, path):
    """Traversal, NULs and huge names: 400 or 404, and no log reader is ever opened
    (the reader only sees a pod and a container the pod list knows)."""
    async with http.get(yarl.URL(url(server, path), encoded=True)) as response:
        assert response.status in (400, 404), (response.status, await response.text())
    assert logs.opened == []


async def test_init_containers_have_logs_too(server, http, logs):
    logs.lines[("uid-web", "init")] = [b"init done\n"]
    assert await get(http, server, "/containerLogs/ns/web/init") == (200, "init done\n")


async def test_unavailable_backend_is_503(server, http, logs):
    logs.unavailable = True
    status, text = await get(http, server, "/containerLogs/ns/web/main")
    assert status == 503
    assert "podman is restarting" in text


async def test_follow_streams_each_chunk_and_stops_when_the_client_goes(server, http, logs):
    async with http.get(url(server, "/containerLogs/ns/web/main?follow=true")) as response:
        assert response.status == 200
        received = b""
        while received != b"one\ntwo\nthree\n":
            received += await asyncio.wait_for(response.content.readany(), 5)
        logs.more.put_nowait(b"four\n")
        assert await asyncio.wait_for(response.content.readline(), 5) == b"four\n"
        logs.more.put_nowait(b"five\n")
        assert await asyncio.wait_for(response.content.readline(), 5) == b"five\n"
        assert not logs.closed.is_set()
        response.close()  # the client goes away
    await asyncio.wait_for(logs.closed.wait(), 5)


async def test_close_ends_open_follow_streams(tls, gate, logs, http):
    api = KubeletApiServer(
        node_name="n",
        config=KubeletApiConfig(port=free_port(), health_port=0),
        tls=tls,
        auth=gate,
        find_pod=lambda namespace, name: POD,
        list_pods=list,
        logs=logs,
    )
    await api.start()
    try:
        async with http.get(url(api, "/containerLogs/ns/web/main?follow=true")) as response:
            assert await asyncio.wait_for(response.content.readline(), 5) == b"one\n"
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(api.close(), 10)
            assert asyncio.get_running_loop().time() - started < 5
            await asyncio.wait_for(logs.closed.wait(), 5)
    finally:
        await api.close()


async def test_follow_of_a_quiet_container_answers_before_the_first_line(server, http, logs):
    logs.lines[("uid-web", "main")] = []
    async with http.get(url(server, "/containerLogs/ns/web/main?follow=1")) as response:
        assert response.status == 200  # headers come although nothing was logged yet
        logs.more.put_nowait(b"late\n")
        assert await asyncio.wait_for(response.content.readline(), 5) == b"late\n"
    await asyncio.wait_for(logs.closed.wait(), 5)


async def test_no_log_reader_is_501(tls, gate, http):
    api = KubeletApiServer(
        node_name="n",
        config=KubeletApiConfig(port=free_port(), health_port=0),
        tls=tls,
        auth=gate,
        find_pod=lambda namespace, name: POD,
        list_pods=list,
        logs=None,
    )
    await api.start()
    try:
        assert api.health_port is None
        status, text = await get(http, api, "/containerLogs/ns/web/main")
        assert (status, text) == (501, "this node's backend does not serve container logs")
    finally:
        await api.close()


# ---------------------------------------------------------------- the rest


async def test_pods_is_a_pod_list(server, http):
    status, text = await get(http, server, "/pods")
    assert status == 200
    listing = json.loads(text)
    assert (listing["kind"], listing["apiVersion"]) == ("PodList", "v1")
    assert [p["metadata"]["name"] for p in listing["items"]] == ["web", "gone"]


async def test_healthz_and_metrics_need_auth_on_https(server, http, gate):
    assert await get(http, server, "/healthz") == (200, "ok")
    await get(http, server, "/containerLogs/ns/web/main")
    status, text = await get(http, server, "/metrics")
    assert status == 200
    assert 'vkpy_kubelet_api_requests_total{code="200",path="containerLogs"}' in text
    gate.allow = False
    assert (await get(http, server, "/healthz"))[0] == 403
    assert (await get(http, server, "/metrics"))[0] == 403


@pytest.mark.parametrize(
    "case",
    [
        ("POST", "/exec/ns/web/main?command=ls", 501),
        ("GET", "/exec/ns/web/main", 501),
        ("POST", "/exec/ns/web/uid-web/main", 501),
        ("POST", "/attach/ns/web/main", 501),
        ("POST", "/portForward/ns/web", 501),
        ("GET", "/portForward/ns/web/uid-web", 501),
        ("POST", "/run/ns/web/main", 501),
        ("GET", "/stats/summary", 501),
        ("GET", "/metrics/resource", 501),
        ("GET", "/run/ns/web/main", 405),
        ("POST", "/containerLogs/ns/web/main", 405),
        ("HEAD", "/containerLogs/ns/web/main", 405),
        ("GET", "/nothing", 404),
    ],
)
async def test_what_is_not_served_says_so(server, http, gate, case):
    method, path, status = case
    async with http.request(method, url(server, path)) as response:
        assert response.status == status
        if status == 501:
            assert "not supported by this node" in await response.text()
    assert gate.checked == [path.split("?")[0]]  # authenticated before anything else


async def test_health_listener_is_plain_http_without_auth(server, gate):
    base = f"http://127.0.0.1:{server.health_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert (response.status, await response.text()) == (200, "ok")
        async with session.get(f"{base}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "vkpy_kubelet_api_requests_total" in await response.text()
        async with session.get(
            f"{base}/metrics", headers={"Accept": "application/openmetrics-text"}
        ) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        async with session.get(f"{base}/pods") as response:
            assert response.status == 404  # only health and metrics here
    assert gate.checked == []


async def test_readiness_reflects_the_backend_and_liveness_does_not(tls, gate):
    healthy = [True]
    api = KubeletApiServer(
        node_name="n",
        config=KubeletApiConfig(port=free_port(), health_port=free_port()),
        tls=tls,
        auth=gate,
        find_pod=lambda namespace, name: None,
        list_pods=list,
        logs=None,
        ready=lambda: healthy[0],
    )
    await api.start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{api.health_port}"
            for path in ("/healthz", "/readyz"):
                async with session.get(base + path) as response:
                    assert (response.status, await response.text()) == (200, "ok")
            healthy[0] = False
            async with session.get(base + "/readyz") as response:
                assert response.status == 500
                assert "backend is unhealthy" in await response.text()
            async with session.get(base + "/healthz") as response:
                assert (response.status, await response.text()) == (200, "ok")
    finally:
        await api.close()


async def test_a_busy_port_fails_start_and_leaves_nothing_listening(tls, gate):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api = KubeletApiServer(
            node_name="n",
            config=KubeletApiConfig(port=free_port(), health_port=port),
            tls=tls,
            auth=gate,
            find_pod=lambda namespace, name: None,
            list_pods=list,
            logs=None,
        )
        with pytest.raises(OSError):
            await api.start()
        assert api.port is None


# ---------------------------------------------------------------- TLS versions


def _old_tls_client() -> ssl.SSLContext:
    """A client that offers TLS 1.0 and 1.1 only, as old clients do."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


async def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    """The TLS version agreed on, or None when the server refused the handshake."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    except (ssl.SSLError, ConnectionResetError):
        return None
    version = writer.get_extra_info("ssl_object").version()
    writer.close()
    return version


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls_below_1_2_is_refused(server, tls, ca, tmp_path, client_tls):
    # The control: this client can speak TLS 1.1 to a server that allows it, so the
    # refusal below is the kubelet API's, not the client's.
    lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lenient.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    lenient.set_ciphers("ALL:@SECLEVEL=0")
    serving = pki.issue(ca, tmp_path / "lenient", common_name="x", server=True)
    lenient.load_cert_chain(serving.cert, serving.key)
    control = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=lenient)
    async with control:
        old = await _handshake(control.sockets[0].getsockname()[1], _old_tls_client())
    if old is None:
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all")
    assert old in ("TLSv1", "TLSv1.1")
    assert await _handshake(server.port, _old_tls_client()) is None
    assert await _handshake(server.port, client_tls) in ("TLSv1.2", "TLSv1.3")


async def test_the_health_port_tells_nothing_about_pods(server):
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz", "/livez"):
            async with session.get(f"http://127.0.0.1:{server.health_port}{path}") as response:
                text = await response.text()
                assert "web" not in text and "uid-" not in text and "ns" not in text.split()
