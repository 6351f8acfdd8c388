"""The whole product on real components: `vkpy run` with the Podman backend, pods
placed by the real scheduler, `kubectl logs` through the real apiserver to the
agent's kubelet API (certificate issued through a kubelet-serving CSR and verified)."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.kube.client import Kube
from vkpy.testing.waiting import eventually

from .helpers import AgentProcess, events_for, kubectl, node_ready, pod_for, pod_phase

NS = "default"
IMAGE = "localhost/busybox:latest"


@pytest.fixture
async def kube(kube_api: ApiClient):
    return Kube(kube_api)


@pytest.fixture
async def agent(testbed, kube, tmp_path):
    name = f"podman-{uuid.uuid4().hex[:6]}"
    process = AgentProcess(testbed, tmp_path, name)
    process.start()
    try:
        await eventually(lambda: node_ready(kube, name), timeout=30, what="node Ready")
    except AssertionError:
        process.stop()
        raise AssertionError(f"agent never got Ready:\n{process.tail()}") from None
    yield process
    process.stop()
    listing = await kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={name}")
    for pod in listing["items"]:
        with contextlib.suppress(Exception):
            await kube.delete(
                f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}", {"gracePeriodSeconds": 0}
            )
    with contextlib.suppress(Exception):
        await kube.delete(f"/api/v1/nodes/{name}")
    _podman_cleanup(testbed, name)


def _podman(testbed, *args: str) -> str:
    env = {**os.environ, "CONTAINERS_CONF": str(testbed.podman.containers_conf)}
    return subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def _podman_cleanup(testbed, node: str) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):
        pods = _podman(testbed, "pod", "ps", "-q", "--filter", f"label=vkpy.io/node={node}")
        for pod in pods.split():
            _podman(testbed, "pod", "rm", "-f", pod)


async def create(kube, pod):
    return await kube.create(f"/api/v1/namespaces/{NS}/pods", pod)


async def phase_is(kube, name, *phases):
    return await pod_phase(kube, NS, name) in phases


async def test_multi_container_pod_with_config_secret_and_logs(testbed, kube, agent):
    name = agent.name
    await kube.create(
        f"/api/v1/namespaces/{NS}/configmaps",
        {"metadata": {"name": name}, "data": {"greeting": "hello from a configmap"}},
    )
    await kube.create(
        f"/api/v1/namespaces/{NS}/secrets",
        {"metadata": {"name": name}, "stringData": {"token": "s3cr3t-value"}},
    )
    try:
        pod = pod_for(
            name,
            f"{name}-multi",
            [
                {
                    "name": "reader",
                    "image": IMAGE,
                    "command": ["sh", "-c"],
                    "args": [
                        'cat /work/ready; echo "GREETING=$GREETING POD=$POD";'
                        " wc -c < /secret/token; ls -l /secret/token"
                    ],
                    "env": [
                        {
                            "name": "GREETING",
                            "valueFrom": {"configMapKeyRef": {"name": name, "key": "greeting"}},
                        },
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ],
                    "volumeMounts": [
                        {"name": "work", "mountPath": "/work"},
                        {"name": "secret", "mountPath": "/secret", "readOnly": True},
                    ],
                },
                {
                    "name": "second",
                    "image": IMAGE,
                    "command": ["sh", "-c", "echo second container"],
                },
            ],
            kind="podman",
            initContainers=[
                {
                    "name": "prepare",
                    "image": IMAGE,
                    "command": ["sh", "-c", "echo prepared > /work/ready"],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                }
            ],
            volumes=[
                {"name": "work", "emptyDir": {}},
                {"name": "secret", "secret": {"secretName": name}},
            ],
        )
        await create(kube, pod)
        await eventually(
            lambda: phase_is(kube, f"{name}-multi", "Succeeded", "Failed"),
            timeout=90,
            what="the pod to finish",
        )
        done = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}-multi")
        assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"], indent=1)
        assert done["spec"]["nodeName"] == name  # placed by the real scheduler
        states = {c["name"]: c for c in done["status"]["containerStatuses"]}
        assert states["reader"]["state"]["terminated"]["reason"] == "Completed"
        assert states["reader"]["containerID"].startswith("podman://")
        init = done["status"]["initContainerStatuses"][0]
        assert init["state"]["terminated"]["exitCode"] == 0
        logs = await eventually(
            lambda: _logs(testbed, f"{name}-multi", "reader"), timeout=60, what="kubectl logs"
        )
        assert "prepared" in logs
        assert f"GREETING=hello from a configmap POD={name}-multi" in logs
        assert "12\n" in logs  # the secret's bytes are there...
        assert "-rw-r--r--" in logs  # ...with the kubelet's default mode, 0644
        assert "s3cr3t-value" not in agent.log.read_text()
    finally:
        await kube.delete(f"/api/v1/namespaces/{NS}/configmaps/{name}")
        await kube.delete(f"/api/v1/namespaces/{NS}/secrets/{name}")


async def _logs(testbed, pod: str, container: str, *extra: str) -> str:
    result = await asyncio.to_thread(kubectl, testbed, "logs", pod, "-c", container, *extra)
    return result.stdout if result.returncode == 0 else ""


async def test_exit_codes_become_phases(testbed, kube, agent):
    for code in (0, 3):
        await create(
            kube,
            pod_for(
                agent.name,
                f"{agent.name}-exit{code}",
                [{"name": "main", "image": IMAGE, "command": ["sh", "-c", f"exit {code}"]}],
                kind="podman",
            ),
        )
    await eventually(
        lambda: phase_is(kube, f"{agent.name}-exit0", "Succeeded"), timeout=60, what="Succeeded"
    )
    await eventually(
        lambda: phase_is(kube, f"{agent.name}-exit3", "Failed"), timeout=60, what="Failed"
    )
    for code, reason in ((0, "Completed"), (3, "Error")):
        pod = await kube.get(f"/api/v1/namespaces/{NS}/pods/{agent.name}-exit{code}")
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (code, reason)


async def test_logs_follow_and_graceful_delete(testbed, kube, agent):
    name = f"{agent.name}-follow"
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 1; done; sleep 300"
    await create(
        kube,
        pod_for(
            agent.name,
            name,
            [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script]}],
            kind="podman",
        ),
    )
    await eventually(lambda: phase_is(kube, name, "Running"), timeout=60, what="Running")
    # The serving certificate comes from a CSR signed moments after the agent starts.
    await eventually(lambda: _logs(testbed, name, "main"), timeout=60, what="logs reachable")
    env = {**os.environ, "KUBECONFIG": str(testbed.cluster.admin_kubeconfig)}
    follower = await asyncio.create_subprocess_exec(
        "kubectl",
        "logs",
        "-f",
        name,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    seen = []
    while len(seen) < 5:
        line = await asyncio.wait_for(follower.stdout.readline(), 30)
        assert line, (await follower.stderr.read()).decode()
        seen.append(line.decode().strip())
    assert seen == [f"line {i}" for i in range(1, 6)]
    follower.kill()
    await follower.wait()
    deleted = await asyncio.to_thread(
        kubectl, testbed, "delete", "pod", name, "--grace-period=3", "--wait=true", timeout=60
    )
    assert deleted.returncode == 0, deleted.stderr
    remaining = _podman(
        testbed,
        "ps",
        "-a",
        "-q",
        "--filter",
        f"label=vkpy.io/node={agent.name}",
        "--filter",
        f"label=vkpy.io/name={name}",
    )
    assert remaining.split() == []
    kinds = [e["reason"] for e in await events_for(kube, NS, name)]
    assert "Started" in kinds and "Killing" in kinds


async def test_kill_9_and_restart_adopts_the_running_container(testbed, kube, agent):
    name = f"{agent.name}-survivor"
    await create(
        kube,
        pod_for(
            agent.name,
            name,
            [{"name": "main", "image": IMAGE, "command": ["sleep", "300"]}],
            kind="podman",
        ),
    )
    await eventually(lambda: phase_is(kube, name, "Running"), timeout=60, what="Running")
    before = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    container_id = before["status"]["containerStatuses"][0]["containerID"]
    agent.stop(signal.SIGKILL)
    agent.start()
    await asyncio.sleep(3)
    await eventually(lambda: node_ready(kube, agent.name), timeout=30, what="Ready after restart")
    await asyncio.sleep(2)
    after = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    status = after["status"]["containerStatuses"][0]
    assert after["status"]["phase"] == "Running"
    assert status["containerID"] == container_id
    assert status["restartCount"] == 0
    containers = _podman(
        testbed,
        "ps",
        "-a",
        "-q",
        "--filter",
        f"label=vkpy.io/name={name}",
        "--filter",
        "label=vkpy.io/init=false",
    )
    assert len(containers.split()) == 1  # started once, never twice


async def test_unsupported_pod_fails_and_others_still_run(testbed, kube, agent):
    bad, good = f"{agent.name}-hostpath", f"{agent.name}-fine"
    await create(
        kube,
        pod_for(
            agent.name,
            bad,
            [
                {
                    "name": "main",
                    "image": IMAGE,
                    "command": ["true"],
                    "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                }
            ],
            kind="podman",
            volumes=[{"name": "host", "hostPath": {"path": "/etc"}}],
        ),
    )
    await create(
        kube,
        pod_for(
            agent.name,
            good,
            [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "echo fine"]}],
            kind="podman",
        ),
    )
    await eventually(lambda: phase_is(kube, bad, "Failed"), timeout=60, what="Failed")
    await eventually(lambda: phase_is(kube, good, "Succeeded"), timeout=60, what="Succeeded")
    failed = await kube.get(f"/api/v1/namespaces/{NS}/pods/{bad}")
    assert "hostPath" in failed["status"]["message"]
    warnings = [e for e in await events_for(kube, NS, bad) if e["type"] == "Warning"]
    assert any("hostPath" in e["message"] for e in warnings)


async def test_missing_image_is_err_image_pull(testbed, kube, agent):
    name = f"{agent.name}-noimage"
    await create(
        kube,
        pod_for(
            agent.name,
            name,
            [{"name": "main", "image": "localhost/does-not-exist:1"}],
            kind="podman",
        ),
    )

    async def waiting_reason():
        pod = await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return (statuses[0].get("state") or {}).get("waiting", {}).get("reason")

    assert await eventually(waiting_reason, timeout=60) in ("ErrImagePull", "ImagePullBackOff")
    assert await pod_phase(kube, NS, name) == "Pending"
    assert any(
        e["reason"] == "Failed" and "pull" in e["message"] for e in await events_for(kube, NS, name)
    )


async def test_kubelet_api_refuses_anonymous_callers(testbed, kube, agent):
    node = await kube.get(f"/api/v1/nodes/{agent.name}")
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]

    async def anonymous_status():
        result = await asyncio.to_thread(
            subprocess.run,
            [
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"https://127.0.0.1:{port}/pods",
            ],
            capture_output=True,
            text=True,
        )
        return result.stdout if result.stdout != "000" else None  # 000: no certificate yet

    assert await eventually(anonymous_status, timeout=60, what="a TLS answer") == "401"
