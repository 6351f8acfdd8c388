"""A worker node with a real kubelet and containerd: the reference every status vkpy
writes is compared with, and the node the agent's Deployment runs on.

Steps, each idempotent (``up`` keeps what runs already):
1. A bridge ``vkpyworker0`` holding the node's address (10.244.0.1/24). The CNI bridge
   plugin attaches each pod to it, so the host, the apiserver with it, reaches pod IPs,
   and pods reach the apiserver at the node's address (it listens on all addresses).
2. Certificates from the cluster CA: a client certificate ``system:node:<name>`` in
   ``system:nodes``, so the node registers through the Node authorizer and
   NodeRestriction as a real node does, and a serving certificate for the node's IP,
   which the apiserver verifies (``--kubelet-certificate-authority``).
3. containerd from Debian's package, with its own socket, root and state directories
   (``worker_config`` lists the settings these machines need).
4. Images without a registry: a pause image of Debian's static ``catatonit -P``, and the
   testbed's busybox image, moved from Podman with ``podman save`` | ``ctr import``.
5. The kubelet built from the same ``k8s.io/kubernetes`` version as the control plane,
   on ports of its own (10350, healthz 10358), tainted so only pods that ask land here.

``down`` stops the kubelet, kills every container's task, stops containerd and removes
the mounts, network namespaces and leases the pods held, so a later ``up`` starts clean.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from vkpy.testing import pki
from vkpy.testing.controlplane import ControlPlane, kubeconfig
from vkpy.testing.errors import TestbedError
from vkpy.testing.processes import Supervisor
from vkpy.testing.worker_config import (
    BRIDGE,
    PAUSE_IMAGE,
    TAINT_KEY,
    WorkerLayout,
    cni_network,
    containerd_config,
    kubelet_config,
)

CONTAINERD = "worker-containerd"
KUBELET = "worker-kubelet"


@dataclass(frozen=True)
class Worker:
    """The running worker node, as tests use it."""

    name: str
    node_ip: str
    containerd_socket: Path
    versions: dict[str, str]

    taint_key: str = TAINT_KEY


def layout_of(state: Path) -> WorkerLayout:
    return WorkerLayout(root=state / "worker")


def _run(
    argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None
) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, env=env)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise TestbedError(f"`{' '.join(argv)}` failed: {err}")
    return proc.stdout.decode(errors="replace")


def _require_tools() -> None:
    for tool, package in (
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("catatonit", "catatonit"),
        ("ip", "iproute2"),
    ):
        if shutil.which(tool) is None:
            raise TestbedError(f"{tool} is missing: apt-get install -y {package}")
    if not Path("/usr/lib/cni/bridge").exists():
        raise TestbedError(
            "CNI plugins are missing: apt-get install -y containernetworking-plugins"
        )


def _ensure_bridge(layout: WorkerLayout) -> None:
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addresses = _run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE])
    if f" {layout.node_ip}/" not in addresses:
        prefix = layout.pod_subnet.split("/")[1]
        _run(["ip", "addr", "add", f"{layout.node_ip}/{prefix}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def _issue_certificates(layout: WorkerLayout, cluster: ControlPlane) -> pki.KeyPair:
    identity = f"system:node:{layout.name}"
    pki.issue(
        cluster.ca,
        layout.pki / "kubelet-serving",
        common_name=identity,
        organizations=("system:nodes",),
        server=True,
        dns_names=(layout.name,),
        ip_addresses=(layout.node_ip,),
    )
    return pki.issue(
        cluster.ca,
        layout.pki / "kubelet-client",
        common_name=identity,
        organizations=("system:nodes",),
        client=True,
    )


def _write_files(layout: WorkerLayout, cluster: ControlPlane, client: pki.KeyPair) -> None:
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (layout.root / "containerd.toml").write_text(containerd_config(layout))
    (layout.cni_conf_dir / "10-vkpy-testbed.conflist").write_text(cni_network(layout))
    config = kubelet_config(layout, client_ca=cluster.ca.cert)
    (layout.root / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    kubeconfig_path = layout.root / "kubelet.kubeconfig"
    document = kubeconfig(cluster.server, cluster.ca.cert, client, f"system:node:{layout.name}")
    kubeconfig_path.write_text(yaml.safe_dump(document, sort_keys=False))
    kubeconfig_path.chmod(0o600)


def _ctr(layout: WorkerLayout, *args: str, stdin: bytes | None = None) -> str:
    return _run(
        ["ctr", "--address", str(layout.containerd_socket), "--namespace", "k8s.io", *args],
        stdin=stdin,
    )


def _containerd_images(layout: WorkerLayout) -> set[str]:
    return set(_ctr(layout, "images", "list", "--quiet").split())


def _pause_archive(directory: Path, podman_env: Mapping[str, str]) -> Path:
    """The sandbox image: catatonit in pause mode, which waits for a signal and reaps
    what the pod's containers leave behind, as registry.k8s.io/pause does."""
    root = directory / "rootfs"
    root.mkdir()
    shutil.copy2(shutil.which("catatonit") or "/usr/bin/catatonit", root / "pause")
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True)
    _run(
        ["podman", "import", "--change", 'ENTRYPOINT ["/pause", "-P"]', "-", PAUSE_IMAGE],
        stdin=tar.stdout,
        env=podman_env,
    )
    return _podman_archive(directory, PAUSE_IMAGE, podman_env)


def _podman_archive(directory: Path, image: str, podman_env: Mapping[str, str]) -> Path:
    archive = directory / (image.replace("/", "_").replace(":", "_") + ".tar")
    _run(
        ["podman", "save", "--format", "docker-archive", "-o", str(archive), image], env=podman_env
    )
    return archive


def import_images(
    layout: WorkerLayout, podman_env: Mapping[str, str], images: Sequence[str]
) -> None:
    """Put the pause image and ``images`` (from the host's Podman) into containerd's
    ``k8s.io`` namespace, where the kubelet finds them; those there already are kept."""
    present = _containerd_images(layout)
    with tempfile.TemporaryDirectory(prefix="vkpy-worker-images-") as tmp:
        archives: list[Path] = []
        if PAUSE_IMAGE not in present:
            archives.append(_pause_archive(Path(tmp), podman_env))
        archives += [
            _podman_archive(Path(tmp), image, podman_env)
            for image in images
            if image not in present
        ]
        for archive in archives:
            _ctr(layout, "images", "import", "--no-unpack=false", str(archive))


def _start_containerd(layout: WorkerLayout, supervisor: Supervisor) -> None:
    if supervisor.pid(CONTAINERD) is None:
        layout.containerd_socket.unlink(missing_ok=True)
    supervisor.start(CONTAINERD, ["containerd", "--config", str(layout.root / "containerd.toml")])
    supervisor.wait_until(
        CONTAINERD,
        lambda: (
            subprocess.run(
                ["ctr", "--address", str(layout.containerd_socket), "version"], capture_output=True
            ).returncode
            == 0
        ),
        what="API socket",
    )


def _start_kubelet(layout: WorkerLayout, supervisor: Supervisor, binary: Path) -> None:
    layout.kubelet_dir.mkdir(parents=True, exist_ok=True)
    supervisor.start(
        KUBELET,
        [
            str(binary),
            f"--config={layout.root / 'kubelet.yaml'}",
            f"--kubeconfig={layout.root / 'kubelet.kubeconfig'}",
            f"--root-dir={layout.kubelet_dir}",
            f"--cert-dir={layout.pki}",
            f"--node-ip={layout.node_ip}",
            f"--hostname-override={layout.name}",
            "--v=1",
        ],
        env={**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _node_ready(cluster: ControlPlane, name: str) -> bool:
    context = ssl.create_default_context(cafile=str(cluster.ca.cert))
    context.load_cert_chain(str(cluster.admin.cert), str(cluster.admin.key))
    url = f"{cluster.server}/api/v1/nodes/{name}"
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:  # noqa: S310
            node = json.load(response)
    except OSError:
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def versions(kubelet: Path) -> dict[str, str]:
    """What the testbed's report shows: the kubelet's and containerd's own versions."""
    kubelet_version = _run([str(kubelet), "--version"]).split()[-1]
    containerd_version = _run(["containerd", "--version"]).split()[2]
    return {"kubelet": kubelet_version, "containerd": containerd_version}


def up(
    state: Path,
    supervisor: Supervisor,
    cluster: ControlPlane,
    *,
    kubelet: Path,
    podman_env: Mapping[str, str],
    images: Sequence[str],
) -> Worker:
    _require_tools()
    layout = layout_of(state)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.root.chmod(0o700)
    _ensure_bridge(layout)
    client = _issue_certificates(layout, cluster)
    _write_files(layout, cluster, client)
    _start_containerd(layout, supervisor)
    import_images(layout, podman_env, images)
    _start_kubelet(layout, supervisor, kubelet)
    # A Node left Ready by an earlier kubelet looks Ready at once: ask this one first.
    supervisor.wait_until(
        KUBELET, lambda: _healthy(layout.healthz_port), what="/healthz", timeout=90
    )
    supervisor.wait_until(
        KUBELET, lambda: _node_ready(cluster, layout.name), what="Node Ready", timeout=90
    )
    return Worker(layout.name, layout.node_ip, layout.containerd_socket, versions(kubelet))


def _shim_pids(layout: WorkerLayout) -> list[int]:
    """containerd-shim processes serving this containerd: they outlive it by design."""
    marker = str(layout.containerd_socket).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                pids.append(int(proc.name))
    return pids


def _unmount_under(root: Path) -> None:
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == str(root) or target.startswith(f"{root}/"):
            mounts.append(target)
    for target in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def down(state: Path, supervisor: Supervisor) -> None:
    layout = layout_of(state)
    supervisor.stop(KUBELET)
    if supervisor.pid(CONTAINERD) is not None:
        with contextlib.suppress(TestbedError):
            for task in _ctr(layout, "tasks", "list", "--quiet").split():
                with contextlib.suppress(TestbedError):  # it may have ended meanwhile
                    _ctr(layout, "tasks", "kill", "--signal", "SIGKILL", task)
    supervisor.stop(CONTAINERD)
    for pid in _shim_pids(layout):  # left when containerd had died before `down`
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not layout.root.exists():
        return
    _unmount_under(layout.root)
    for netns in Path("/run/netns").glob("cni-*"):  # containerd's pod network namespaces
        subprocess.run(["ip", "netns", "delete", netns.name], capture_output=True)
    for transient in (layout.root / "containerd" / "state", layout.root / "cni" / "ipam"):
        shutil.rmtree(transient, ignore_errors=True)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
