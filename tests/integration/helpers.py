"""Shared helpers for integration tests: pods aimed at a virtual node, and waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from vkpy.errors import KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube
from vkpy.testing.waiting import eventually

REPO = Path(__file__).resolve().parents[2]


def pod_for(
    node: str,
    name: str,
    containers: list[JSON],
    *,
    kind: str = "instant",
    restart: str = "Never",
    **spec: Any,
) -> JSON:
    """A pod that only the virtual node ``node`` accepts: nodeSelector + toleration.
    Images are used as they are here (no registry to pull `:latest` from)."""
    containers = [{"imagePullPolicy": "IfNotPresent", **c} for c in containers]
    for init in spec.get("initContainers", []):
        init.setdefault("imagePullPolicy", "IfNotPresent")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node, "type": "virtual-kubelet"},
            "tolerations": [
                {
                    "key": "virtual-kubelet.io/provider",
                    "operator": "Equal",
                    "value": kind,
                    "effect": "NoSchedule",
                }
            ],
            "restartPolicy": restart,
            "containers": containers,
            "terminationGracePeriodSeconds": 5,
            **spec,
        },
    }


async def pod_phase(kube: Kube, namespace: str, name: str) -> str | None:
    pod = await kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    return (pod.get("status") or {}).get("phase")


async def pod_gone(kube: Kube, namespace: str, name: str) -> bool:
    """Whether the API answers 404 for the pod: its agent confirmed the deletion."""
    try:
        await kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    except KubeApiError as exc:
        return exc.status == 404
    return False


async def events_for(kube: Kube, namespace: str, name: str) -> list[JSON]:
    listing = await kube.get(
        f"/api/v1/namespaces/{namespace}/events", fieldSelector=f"involvedObject.name={name}"
    )
    return list(listing.get("items") or [])


class AgentProcess:
    """`vkpy run` as users start it, in its own process."""

    def __init__(
        self,
        testbed: Any,
        tmp_path: Path,
        name: str,
        config: str = "podman.yaml",
        *,
        settings: dict[str, Any] | None = None,
        backend: dict[str, Any] | None = None,
        kubelet_api: dict[str, Any] | None = None,
    ) -> None:
        """The testbed's ``config`` for node ``name``, with top-level ``settings``,
        ``backend`` and ``kubelet_api`` fields replaced."""
        self.name = name
        document = yaml.safe_load((testbed.state / config).read_text())
        document["state_dir"] = str(tmp_path / "agent")
        document["kubelet_api"].update({"port": 0, "health_port": 0, **(kubelet_api or {})})
        if document["backend"]["kind"] == "podman":
            document["backend"]["state_dir"] = str(tmp_path / "podman")
        document["status_poll_seconds"] = 1
        document.update(settings or {})
        document["backend"].update(backend or {})
        self.config = tmp_path / "agent.yaml"
        self.config.write_text(yaml.safe_dump(document))
        self.log = tmp_path / "agent.log"
        self.env = {**os.environ, "KUBECONFIG": str(testbed.cluster.admin_kubeconfig)}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vkpy.cli",
                    "run",
                    "--config",
                    str(self.config),
                    "--node-name",
                    self.name,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


async def node_ready(kube: Kube, name: str) -> bool:
    try:
        node = await kube.get(f"/api/v1/nodes/{name}")
    except Exception:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def kubectl(testbed: Any, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """kubectl as the cluster admin, from the repository's root (paths in args are
    relative to it)."""
    env = {**os.environ, "KUBECONFIG": str(testbed.cluster.admin_kubeconfig)}
    return subprocess.run(
        ["kubectl", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def account_files(testbed: Any, tmp_path: Path, account: str, namespace: str = "vkpy") -> Path:
    """What Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount for a pod
    of ``account``: a token of its own, the cluster CA and the namespace."""
    token = kubectl(testbed, "create", "token", account, "-n", namespace, "--duration=1h")
    assert token.returncode == 0, token.stderr
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(token.stdout.strip())
    (directory / "ca.crt").write_bytes(testbed.cluster.ca.cert.read_bytes())
    (directory / "namespace").write_text(namespace)
    return directory


def in_cluster_env(testbed: Any, account_dir: Path) -> dict[str, str]:
    """The environment of a pod: the apiserver's service address and the account's files
    (VKPY_SERVICE_ACCOUNT_DIR standing in for the usual mount), no kubeconfig."""
    server = urlsplit(testbed.cluster.server)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["KUBERNETES_SERVICE_HOST"] = str(server.hostname)
    env["KUBERNETES_SERVICE_PORT"] = str(server.port)
    env["VKPY_SERVICE_ACCOUNT_DIR"] = str(account_dir)
    return env


@contextlib.asynccontextmanager
async def running_agent(
    kube: Kube,
    process: AgentProcess,
    *,
    timeout: float = 40,
    drained: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[AgentProcess]:
    """Start ``process``, wait until its node is Ready; on the way out delete the node's
    pods, wait until they are gone from the API and ``drained`` (the backend holds
    nothing of the node) is true, stop the agent and delete the node."""
    process.start()
    try:
        await eventually(lambda: node_ready(kube, process.name), timeout=timeout, what="Ready")
    except AssertionError:
        process.stop()
        raise AssertionError(f"agent never got Ready:\n{process.tail()}") from None
    try:
        yield process
    finally:
        selector = f"spec.nodeName={process.name}"
        for pod in (await kube.get("/api/v1/pods", fieldSelector=selector))["items"]:
            with contextlib.suppress(Exception):
                meta = pod["metadata"]
                await kube.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")

        async def no_pods() -> bool:
            return not (await kube.get("/api/v1/pods", fieldSelector=selector))["items"]

        with contextlib.suppress(AssertionError):
            await eventually(no_pods, timeout=60, what="the agent to delete its pods")
            if drained is not None:
                await eventually(drained, timeout=30, what="the backend to hold nothing")
        process.stop()
        with contextlib.suppress(Exception):
            await kube.delete(f"/api/v1/nodes/{process.name}")


async def logs_become(
    testbed: Any, pod: str, container: str, expected: str, *, timeout: float = 30
) -> None:
    """Run `kubectl logs` until it prints exactly ``expected``; fail showing what it said."""
    seen: list[str] = []

    async def matches() -> bool:
        done = await asyncio.to_thread(kubectl, testbed, "logs", pod, "-c", container)
        seen.append(done.stdout + done.stderr)
        return done.stdout == expected

    try:
        await eventually(matches, timeout=timeout, what="kubectl logs")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; kubectl logs said {seen[-1:]!r}") from None
