import asyncio
import contextlib
import dataclasses
from datetime import UTC, datetime

from vkpy import node as node_module
from vkpy.backend import Capacity, Health
from vkpy.config import NodeConfig
from vkpy.node import (
    NodeIdentity,
    NodeReporter,
    capacity,
    labels,
    merged_taints,
    node_status,
    taints,
)
from vkpy.testing.memkube import MemKube

IDENTITY = NodeIdentity("vk1", "slurm", "10.0.0.5", 10250, "boot-1")
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_default_labels_and_taint_users_select_on():
    config = NodeConfig(name="vk1", labels={"site": "hpc"})
    assert (
        labels(config, "slurm").items()
        >= {
            "type": "virtual-kubelet",
            "kubernetes.io/role": "agent",
            "kubernetes.io/hostname": "vk1",
            "kubernetes.io/os": "linux",
            "site": "hpc",
        }.items()
    )
    assert taints(config, "slurm")[0] == {
        "key": "virtual-kubelet.io/provider",
        "value": "slurm",
        "effect": "NoSchedule",
    }


def test_ready_node_reports_everything_the_apiserver_needs():
    status = node_status(IDENTITY, Health(True), {"cpu": "4", "pods": "10"}, {}, NOW)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "KubeletReady"
    assert {k: c["status"] for k, c in conditions.items() if k != "Ready"} == {
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
        "NetworkUnavailable": "False",
    }
    assert status["addresses"] == [{"type": "InternalIP", "address": "10.0.0.5"}]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert status["allocatable"] == {"cpu": "4", "pods": "10"}
    assert {k for k, v in status["nodeInfo"].items() if not v} == {"kubeProxyVersion"}


def test_unhealthy_backend_is_not_ready_and_offers_no_pods():
    status = node_status(
        IDENTITY, Health(False, "ssh: connection refused"), {"pods": "10"}, {}, NOW
    )
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False"
    assert "ssh: connection refused" in ready["message"]
    assert status["allocatable"]["pods"] == "0"
    assert status["capacity"]["pods"] == "10"


def test_transition_time_is_kept_while_ready_holds():
    first = node_status(IDENTITY, Health(True), {}, {}, NOW)
    previous = {c["type"]: c for c in first["conditions"]}
    later = node_status(
        IDENTITY, Health(True), {}, previous, datetime(2026, 11, 25, 13, tzinfo=UTC)
    )
    ready = {c["type"]: c for c in later["conditions"]}["Ready"]
    assert ready["lastTransitionTime"] == "2026-11-25T12:00:00Z"
    assert ready["lastHeartbeatTime"] == "2026-11-25T13:00:00Z"


def test_capacity_from_the_backend_overrides_the_config():
    config = NodeConfig(capacity={"cpu": "1", "memory": "1Gi", "pods": "5", "example.com/x": "2"})
    assert capacity(config, None) == config.capacity
    assert capacity(config, Capacity(cpu_millis=64000, memory_bytes=1024, pods=100, gpus=4)) == {
        "cpu": "64000m",
        "memory": "1024",
        "pods": "100",
        "example.com/x": "2",
        "nvidia.com/gpu": "4",
    }


def test_merged_taints_keep_what_others_added():
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    old_own = {"key": "virtual-kubelet.io/provider", "value": "podman", "effect": "NoSchedule"}
    new_own = {"key": "virtual-kubelet.io/provider", "value": "slurm", "effect": "NoSchedule"}
    assert merged_taints([unreachable, old_own], [new_own]) == [unreachable, new_own]


def test_the_provider_taint_can_be_turned_off_and_is_then_removed():
    config = NodeConfig(
        provider_taint=False, taints=[{"key": "site/gpu", "value": "yes", "effect": "NoSchedule"}]
    )
    wanted = taints(config, "podman")
    assert wanted == [{"key": "site/gpu", "value": "yes", "effect": "NoSchedule"}]
    registered = [
        {"key": "virtual-kubelet.io/provider", "value": "podman", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
    ]
    assert merged_taints(registered, wanted) == [registered[1], *wanted]
    assert NodeConfig().provider_taint is True
    assert taints(NodeConfig(taints=[]), "slurm")[0]["key"] == "virtual-kubelet.io/provider"


async def test_health_is_checked_on_its_own_timer_and_at_once_when_poked(monkeypatch):
    monkeypatch.setattr(node_module, "SICK_HEALTH_SECONDS", 0.02)
    kube, answers, checks = MemKube(), [Health(True)], []

    async def health() -> Health:
        checks.append(answers[0])
        return answers[0]

    async def resources() -> dict[str, str]:
        return {"pods": "10"}

    reporter = NodeReporter(
        kube,
        NodeConfig(name="vk1"),
        IDENTITY,
        health=health,
        resources=resources,
        interval=60,
        health_interval=60,
    )
    await reporter.register()

    def ready() -> str:
        node = kube.object("/api/v1/nodes/vk1") or {}
        return {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]

    async def until(check) -> None:
        for _ in range(200):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    task = asyncio.create_task(reporter.run())
    try:
        await asyncio.sleep(0.2)
        assert len(checks) == 1  # registering; no polling every few seconds
        answers[0] = Health(False, "login node unreachable")
        reporter.poke()  # a backend call found it unreachable
        await until(lambda: ready() == "False")
        answers[0] = Health(True)  # while sick it is checked often: Ready comes back
        await until(lambda: ready() == "True")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_declared_features_are_named_and_taken_back_when_gone():
    declaring = dataclasses.replace(IDENTITY, declared_features=("ExtendWebSocketsToKubelet",))
    status = node_status(declaring, Health(True), {"pods": "1"}, {}, NOW)
    assert status["declaredFeatures"] == ["ExtendWebSocketsToKubelet"]
    # None in a strategic merge patch removes what an earlier agent declared.
    assert node_status(IDENTITY, Health(True), {"pods": "1"}, {}, NOW)["declaredFeatures"] is None


def test_websocket_streaming_is_declared_only_for_a_backend_that_can_exec():
    from vkpy.agent import declared_features
    from vkpy.config import load
    from vkpy.testing.instant import InstantBackend

    class Execs(InstantBackend):
        async def exec(self, request: object) -> object:
            raise NotImplementedError

    settings = load(None, {"node": {"name": "vk1"}})
    assert declared_features(settings, Execs()) == ("ExtendWebSocketsToKubelet",)
    assert declared_features(settings, InstantBackend()) == ()
    off = load(None, {"node": {"name": "vk1"}, "kubelet_api": {"websocket_streaming": False}})
    assert declared_features(off, Execs()) == ()
