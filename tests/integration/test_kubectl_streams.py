"""kubectl exec, cp, attach and port-forward into pods on every backend, through the
real apiserver (v1.36), both ways it reaches a kubelet: WebSockets passed straight
through (the node declares ExtendWebSocketsToKubelet) and SPDY (it does not); and
through an apiserver that only speaks SPDY to kubelets (v1.33, `old_apiserver`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient

from vkpy.kube.client import Kube
from vkpy.testing import pki
from vkpy.testing.waiting import WaitTimeout, eventually, eventually_sync

from .helpers import AgentProcess, node_ready, pod_for, pod_gone, pod_phase
from .streaming import PortForward, Terminal, kubectl_env, run_kubectl

NS = "default"
IMAGE = "localhost/busybox:latest"
BACKENDS = {"podman": "podman.yaml", "slurm": "slurm.yaml", "htcondor": "htcondor.yaml"}


@dataclass
class StreamNode:
    """A running agent, one pod on it serving HTTP and ticking, and how to reach it."""

    name: str
    kind: str
    mode: str  # websocket, spdy (v1.36 without the declared feature), old (v1.33)
    pod: str
    http_port: int
    kubeconfig: Path
    agent: AgentProcess

    def kubectl(self, *args: str, stdin: bytes | None = None, timeout: float = 60):
        return run_kubectl(self.kubeconfig, *args, stdin=stdin, timeout=timeout)


def server_container(port: int) -> dict[str, object]:
    script = (
        "mkdir -p /tmp/www && echo hello-from-the-pod > /tmp/www/index.html && "
        f"httpd -p {port} -h /tmp/www && i=0; "
        "while true; do i=$((i+1)); echo tick $i; sleep 1; done"
    )
    return {"name": "main", "image": IMAGE, "command": ["sh", "-c", script]}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param((kind, mode), id=f"{kind}-{mode}")
        for kind in BACKENDS
        for mode in ("websocket", "spdy", "old")
        if mode != "old" or kind != "htcondor"
    ],
)
async def node(request, testbed, tmp_path_factory) -> AsyncIterator[StreamNode]:
    kind, mode = request.param
    name = f"st-{kind[:3]}-{mode[:3]}-{uuid.uuid4().hex[:5]}"
    workdir = tmp_path_factory.mktemp(name)
    kubelet_api: dict[str, object] = {"websocket_streaming": mode == "websocket"}
    target = testbed
    if mode == "old":
        old = request.getfixturevalue("old_apiserver")
        target = old.endpoints(testbed)
        kubelet_api.update(serving_files(testbed, workdir, name))
    async with kube_client(target.cluster.admin_kubeconfig) as kube:
        async for node in running_node(
            target, kube, workdir, name, kind=kind, mode=mode, kubelet_api=kubelet_api
        ):
            yield node


def serving_files(testbed, workdir: Path, name: str) -> dict[str, object]:
    """A serving certificate from the testbed's CA: no one signs CSRs for the old apiserver."""
    serving = pki.issue(
        testbed.cluster.ca,
        workdir / "serving",
        common_name=f"system:node:{name}",
        organizations=("system:nodes",),
        server=True,
        ip_addresses=("127.0.0.1",),
    )
    return {
        "serving_certificate": "files",
        "cert_file": str(serving.cert),
        "key_file": str(serving.key),
    }


@contextlib.asynccontextmanager
async def kube_client(kubeconfig: Path) -> AsyncIterator[Kube]:
    api: ApiClient = await config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield Kube(api)
    finally:
        await api.close()


async def running_node(target, kube, workdir, name, *, kind, mode, kubelet_api):
    agent = AgentProcess(target, workdir, name, BACKENDS[kind], kubelet_api=kubelet_api)
    agent.start()
    try:
        await eventually(lambda: node_ready(kube, name), timeout=40, what="node Ready")
        node_object = await kube.get(f"/api/v1/nodes/{name}")
        declared = node_object["status"].get("declaredFeatures") or []
        assert ("ExtendWebSocketsToKubelet" in declared) == (mode == "websocket"), declared
        port = 20000 + secrets.randbelow(10000)
        pod = f"{name}-pod"
        bound = {"nodeName": name} if mode == "old" else {}  # the old one has no scheduler
        manifest = pod_for(
            name, pod, [server_container(port)], kind=kind, terminationGracePeriodSeconds=2, **bound
        )
        await kube.create(f"/api/v1/namespaces/{NS}/pods", manifest)

        async def running() -> bool:
            return await pod_phase(kube, NS, pod) == "Running"

        await eventually(running, timeout=90, what="the pod to run")
        node = StreamNode(name, kind, mode, pod, port, target.cluster.admin_kubeconfig, agent)

        def serving() -> bool:
            done = node.kubectl(
                "exec", pod, "--", "wget", "-q", "-O", "-", f"http://127.0.0.1:{port}/"
            )
            return b"hello-from-the-pod" in done.stdout

        await eventually(lambda: asyncio.to_thread(serving), timeout=30, what="httpd in the pod")
        yield node
    except BaseException:
        print(agent.tail())
        raise
    finally:
        with contextlib.suppress(Exception):  # the agent confirms the deletion
            await kube.delete(f"/api/v1/namespaces/{NS}/pods/{name}-pod")
            await eventually(lambda: pod_gone(kube, NS, f"{name}-pod"), timeout=30, what="pod gone")
        agent.stop()
        with contextlib.suppress(Exception):
            await kube.delete(f"/api/v1/nodes/{name}")


def pod_stderr(stderr: bytes) -> bytes:
    """kubectl's stderr without kubectl's own log lines. kubectl 1.32's WebSocket client
    reads before it has made its streams, so the empty "ready" message on stdout that the
    kubelet (and the apiserver's translator) sends first is sometimes logged as
    "Unknown stream id 1, discarding message"."""
    lines = stderr.splitlines(keepends=True)
    return b"".join(line for line in lines if not KLOG_LINE.match(line))


KLOG_LINE = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


async def test_exec_keeps_stdout_and_stderr_apart_and_gives_the_exit_code(node):
    done = node.kubectl("exec", node.pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done.stdout == b"out\n"
    assert pod_stderr(done.stderr).startswith(b"err\n"), done.stderr
    assert done.returncode == 3, done.stderr


async def test_exec_stdin_carries_5_mib_of_binary_whole(node):
    payload = os.urandom(5 * 1024 * 1024)
    done = node.kubectl("exec", "-i", node.pod, "--", "sha256sum", stdin=payload, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()


def test_exec_it_gives_a_terminal_that_follows_resizes(node):
    argv = ["kubectl", "exec", "-it", node.pod, "--", "sh"]
    with Terminal(argv, kubectl_env(node.kubeconfig), rows=30, columns=90) as terminal:
        terminal.expect(r"[#$] ")
        terminal.send("stty size\r")
        terminal.expect(r"30 90")
        terminal.resize(41, 101)
        time.sleep(0.5)
        terminal.send("stty size\r")
        terminal.expect(r"41 101")
        terminal.send("exit 5\r")
        assert terminal.wait() == 5


async def test_cp_both_ways(node, tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(300_000))
    up = node.kubectl("cp", str(source), f"{NS}/{node.pod}:/tmp/copied.bin")
    assert up.returncode == 0, up.stderr
    back = tmp_path / "out.bin"
    down = node.kubectl("cp", f"{NS}/{node.pod}:/tmp/copied.bin", str(back))
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == source.read_bytes()


async def test_port_forward_carries_a_real_http_request(node):
    with PortForward(node.kubeconfig, f"pod/{node.pod}", node.http_port) as forward:
        url = f"http://127.0.0.1:{forward.local_port}/"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=20).read())
        assert body == b"hello-from-the-pod\n"
        second = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=20).read())
        assert second == body  # a second connection on the same forward


def test_attach_streams_the_running_containers_output(node):
    process = subprocess.Popen(
        ["kubectl", "attach", node.pod, "-c", "main"],
        env=kubectl_env(node.kubeconfig),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(b"tick "), line
    finally:
        process.kill()
        process.wait()


def processes_matching(pattern: str) -> list[str]:
    done = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return done.stdout.split()


def test_a_session_dropped_midway_kills_its_process(node, tmp_path):
    marker = f"sleep {100000 + secrets.randbelow(900000)}"
    said = tmp_path / "kubectl.err"
    with said.open("wb") as errors:
        process = subprocess.Popen(
            ["kubectl", "exec", node.pod, "--", *marker.split()],
            env=kubectl_env(node.kubeconfig),
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    try:
        try:
            eventually_sync(
                lambda: processes_matching(f"^{marker}$") or process.poll() is not None,
                timeout=30,
                what="started",
            )
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}; kubectl said {said.read_text()!r}") from exc
        assert process.poll() is None, f"kubectl exec ended early: {said.read_text()!r}"
    finally:
        process.kill()
        process.wait()
    eventually_sync(
        lambda: not processes_matching(f"^{marker}$"), timeout=30, what="the process to be killed"
    )
