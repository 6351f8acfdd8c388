import json
import tomllib
from pathlib import Path

from vkpy.testing.worker_config import (
    BRIDGE,
    PAUSE_IMAGE,
    TAINT_KEY,
    WorkerLayout,
    cni_network,
    containerd_config,
    kubelet_config,
)

LAYOUT = WorkerLayout(root=Path("/state/worker"))


def test_containerd_keeps_everything_under_the_worker_directory():
    config = tomllib.loads(containerd_config(LAYOUT))
    assert config["version"] == 2
    assert config["root"] == "/state/worker/containerd/root"
    assert config["state"] == "/state/worker/containerd/state"
    assert config["grpc"]["address"] == "/state/worker/containerd.sock"
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["cni"]["conf_dir"] == "/state/worker/cni/net.d"


def test_containerd_uses_the_local_pause_image_and_clamps_oom_scores():
    cri = tomllib.loads(containerd_config(LAYOUT))["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == PAUSE_IMAGE
    assert cri["restrict_oom_score_adj"] is True
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is False


def test_the_pod_network_is_a_bridge_whose_gateway_is_the_node():
    network = json.loads(cni_network(LAYOUT))
    bridge = network["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == BRIDGE
    assert bridge["isGateway"] is True
    (subnet,) = bridge["ipam"]["ranges"][0]
    assert subnet == {"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}
    assert bridge["ipam"]["dataDir"] == "/state/worker/cni/ipam"


def test_the_kubelet_authenticates_like_a_node_and_keeps_off_the_virtual_ports():
    config = kubelet_config(LAYOUT, client_ca=Path("/pki/ca.crt"))
    assert config["authentication"] == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": True},
        "x509": {"clientCAFile": "/pki/ca.crt"},
    }
    assert config["authorization"] == {"mode": "Webhook"}
    assert (config["address"], config["port"], config["readOnlyPort"]) == ("10.244.0.1", 10350, 0)
    assert config["containerRuntimeEndpoint"] == "unix:///state/worker/containerd.sock"
    assert config["registerWithTaints"] == [{"key": TAINT_KEY, "effect": "NoSchedule"}]
    assert config["cgroupDriver"] == "cgroupfs"


def test_local_images_are_never_collected():
    config = kubelet_config(LAYOUT, client_ca=Path("/pki/ca.crt"))
    assert config["imageGCHighThresholdPercent"] == 100
