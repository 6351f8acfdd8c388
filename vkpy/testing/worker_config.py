"""The worker node's configuration files, as pure functions: containerd's config.toml,
the CNI network, and the kubelet's KubeletConfiguration.

Pitfalls found on these machines, each answered by a setting below:
- root here lacks CAP_SYS_RESOURCE, so runc cannot lower a process's oom_score_adj
  below its parent's and ``runc init`` fails: ``restrict_oom_score_adj = true`` makes
  containerd clamp the value the kubelet asks for.
- crun refuses the hybrid cgroup layout and systemd is not PID 1: runc with cgroupfs,
  in containerd and in the kubelet alike; the kubelet also needs ``failCgroupV1: false``.
- No registry: the sandbox ("pause") image is built locally and containerd is told its
  name, or it would try to pull registry.k8s.io/pause.
- The disk holds other projects' data: eviction on a nearly full disk and image GC
  would evict the tests' pods and delete the locally built images, which nothing can
  pull again, so both are set to act only at the very end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PAUSE_IMAGE = "localhost/vkpy-testbed/pause:1"
BRIDGE = "vkpyworker0"
TAINT_KEY = "vkpy.io/testbed-worker"


@dataclass(frozen=True)
class WorkerLayout:
    """Where the worker keeps its state, all under one directory of the testbed's."""

    root: Path
    name: str = "testbed-worker"
    node_ip: str = "10.244.0.1"
    pod_subnet: str = "10.244.0.0/24"
    kubelet_port: int = 10350
    healthz_port: int = 10358

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def pki(self) -> Path:
        return self.root / "pki"


def containerd_config(layout: WorkerLayout, *, cni_bin_dir: str = "/usr/lib/cni") -> str:
    """containerd 1.6's config.toml (version 2), everything under ``layout.root``."""
    root = layout.root
    return f"""\
version = 2
root = "{root / "containerd" / "root"}"
state = "{root / "containerd" / "state"}"
# Snapshotters that cannot work here only fill the log.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "runc"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{cni_bin_dir}"
  conf_dir = "{layout.cni_conf_dir}"
"""


def cni_network(layout: WorkerLayout) -> str:
    """A bridge network whose gateway is the node's own address, so the host (and with
    it the apiserver) reaches every pod, and pods reach the apiserver at the node IP."""
    network = {
        "cniVersion": "0.4.0",
        "name": "vkpy-testbed",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": layout.pod_subnet, "gateway": layout.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.root / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(network, indent=1)


def kubelet_config(layout: WorkerLayout, *, client_ca: Path) -> dict[str, object]:
    """A KubeletConfiguration: client certificates and webhook authn/z like a real node,
    its own ports (10250 is the virtual nodes'), no swap check, no eviction or image GC
    before the disk is really full."""
    pki = layout.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.node_ip,
        "port": layout.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.healthz_port,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        # These VMs mount cgroup v1 (hybrid); since 1.35 the kubelet refuses it unless told.
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDomain": "cluster.local",
        # No DNS runs here; without an address the kubelet warns on every pod.
        "clusterDNS": ["10.96.0.10"],
        "resolvConf": "/etc/resolv.conf",
        "registerWithTaints": [{"key": TAINT_KEY, "effect": "NoSchedule"}],
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "staticPodPath": "",
    }
