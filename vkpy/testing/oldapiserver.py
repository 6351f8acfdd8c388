"""A second, older kube-apiserver beside the testbed's control plane.

Before 1.36 an apiserver never passes a WebSocket on to a kubelet: whatever kubectl
speaks to it, it speaks SPDY to the node. Streams through this one prove the
kubelet API's SPDY path.

It shares the testbed's etcd under an ``--etcd-prefix`` of its own, so neither
apiserver ever sees the other's objects, and the testbed's PKI: the same CA, serving
certificate and kubelet-client certificate, so an agent's kubelet API trusts it and
verifies it as it does the main apiserver. It runs alone: no scheduler (pods need
``spec.nodeName``) and no controller-manager, so ``prepare_namespace`` creates what
that would have: a namespace's ``default`` ServiceAccount and ``kube-root-ca.crt``.
Nor does anything sign kubelet-serving CSRs: an agent needs a serving certificate
issued by the testbed's CA (``kubelet_api.serving_certificate: files``). Nothing
garbage-collects either (leases, pods of deleted nodes), so each start empties the
prefix.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from vkpy.testing import controlplane
from vkpy.testing.controlplane import ControlPlane, ControlPlanePorts, apiserver_argv
from vkpy.testing.errors import TestbedError
from vkpy.testing.kubebinaries import APISERVER_ONLY, SPDY_APISERVER_VERSION, ensure_binaries
from vkpy.testing.processes import Supervisor, https_ok
from vkpy.testing.testbed import Endpoints

PORT = 26433
ETCD_PREFIX = "/vkpy-old-apiserver"


@dataclass(frozen=True)
class OldApiserver:
    """The running old apiserver: ``cluster`` as for the main one, and its version."""

    cluster: ControlPlane
    version: str

    @property
    def server(self) -> str:
        return self.cluster.server

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.admin_kubeconfig

    def endpoints(self, testbed: Endpoints) -> Endpoints:
        """``testbed`` with its cluster swapped for this apiserver (for helpers that
        take the testbed and use its admin kubeconfig)."""
        return dataclasses.replace(testbed, cluster=self.cluster)


def process_name(version: str) -> str:
    return f"kube-apiserver-{version}"


def start(
    testbed: Endpoints,
    *,
    version: str = SPDY_APISERVER_VERSION,
    port: int = PORT,
    timeout: float = 60.0,
) -> OldApiserver:
    """Start (or find running) the old apiserver beside ``testbed``'s control plane."""
    binaries = ensure_binaries(version, APISERVER_ONLY)
    supervisor = Supervisor(testbed.state)
    certs = testbed.state / "pki"
    ports = dataclasses.replace(ControlPlanePorts(), apiserver=port)
    ca = testbed.cluster.ca
    name = process_name(version)
    argv = apiserver_argv(binaries / "kube-apiserver", ports, certs, ca)
    if supervisor.pid(name) is None:
        forget(ETCD_PREFIX, etcd_port=ports.etcd_client)
    supervisor.start(name, [*argv, f"--etcd-prefix={ETCD_PREFIX}"])
    server = f"https://127.0.0.1:{port}"
    admin = testbed.cluster.admin
    try:
        supervisor.wait_until(
            name,
            lambda: https_ok(f"{server}/readyz", ca=ca.cert, cert=admin.cert, key=admin.key),
            what="/readyz",
            timeout=timeout,
        )
    except TestbedError:
        supervisor.stop(name)
        raise
    # The main apiserver's admin certificate: the same CA signed it.
    kubeconfig = testbed.state / f"admin-{version}.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(controlplane.kubeconfig(server, ca.cert, admin, "admin")))
    kubeconfig.chmod(0o600)
    cluster = ControlPlane(server, ca, admin, kubeconfig)
    return OldApiserver(cluster, served_version(kubeconfig))


def stop(testbed: Endpoints, *, version: str = SPDY_APISERVER_VERSION) -> None:
    Supervisor(testbed.state).stop(process_name(version))


def prefix_range(prefix: str) -> dict[str, str]:
    """The etcd v3 key range (base64, as its JSON gateway wants) of keys under ``prefix``."""
    start = prefix.rstrip("/") + "/"
    end = start[:-1] + chr(ord("/") + 1)
    return {
        "key": base64.b64encode(start.encode()).decode(),
        "range_end": base64.b64encode(end.encode()).decode(),
    }


def forget(prefix: str, *, etcd_port: int) -> None:
    """Delete every key under ``prefix`` through etcd's JSON gateway (no etcdctl needed)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{etcd_port}/v3/kv/deleterange",
        data=json.dumps(prefix_range(prefix)).encode(),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
    except OSError as exc:
        raise TestbedError(f"could not clear {prefix} in etcd: {exc}") from exc


def served_version(kubeconfig: Path) -> str:
    """The apiserver's own gitVersion, from /version."""
    done = _kubectl(kubeconfig, "get", "--raw", "/version")
    return str(json.loads(done)["gitVersion"])


def prepare_namespace(old: OldApiserver, namespace: str) -> None:
    """Create ``namespace`` (unless it exists) with what the missing controller-manager
    would add: the ``default`` ServiceAccount, without which pods are refused, and the
    ``kube-root-ca.crt`` ConfigMap that service-account token volumes project."""
    ca = old.cluster.ca.cert.read_text()
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": namespace},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": namespace},
            "data": {"ca.crt": ca},
        },
    ]
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    _kubectl(old.kubeconfig, "apply", "-f", "-", stdin=document)


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise TestbedError(f"kubectl {' '.join(args[:2])} on the old apiserver: {done.stderr}")
    return done.stdout
