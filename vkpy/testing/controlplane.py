"""A real Kubernetes control plane on 127.0.0.1: etcd, apiserver, scheduler, controller-manager."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml

from vkpy.testing import pki
from vkpy.testing.errors import TestbedError
from vkpy.testing.kubebinaries import ensure_binaries
from vkpy.testing.processes import Supervisor, https_ok, port_open

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/16"


@dataclass(frozen=True)
class ControlPlanePorts:
    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 26443
    scheduler: int = 26459
    controller_manager: int = 26457


@dataclass(frozen=True)
class ControlPlane:
    """What a client needs to reach the running control plane."""

    server: str
    ca: pki.KeyPair  # the cluster CA, key included, for issuing kubelet serving certs
    admin: pki.KeyPair
    admin_kubeconfig: Path


def kubeconfig(server: str, ca: Path, client: pki.KeyPair, user: str) -> dict[str, object]:
    """A kubeconfig document with one cluster, one user, one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "testbed", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(client.cert),
                    "client-key": str(client.key),
                },
            }
        ],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
        "current-context": "testbed",
    }


def _write_kubeconfig(path: Path, document: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def apiserver_argv(
    binary: Path, ports: ControlPlanePorts, certs: Path, ca: pki.KeyPair
) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        # All addresses: pods on the worker node reach it at the node's address.
        "--bind-address=0.0.0.0",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={certs / 'sa.pub'}",
        f"--service-account-signing-key-file={certs / 'sa.key'}",
        "--authorization-mode=Node,RBAC",
        # A node's own credentials may change only its own Node and its pods' status.
        "--enable-admission-plugins=NodeRestriction",
        f"--client-ca-file={ca.cert}",
        f"--tls-cert-file={certs / 'apiserver.crt'}",
        f"--tls-private-key-file={certs / 'apiserver.key'}",
        f"--kubelet-client-certificate={certs / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={certs / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--requestheader-client-ca-file={certs / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={certs / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={certs / 'front-proxy-client.key'}",
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
    ]


class ControlPlaneRunner:
    def __init__(self, state: Path, supervisor: Supervisor, ports: ControlPlanePorts) -> None:
        self.state = state
        self.certs = state / "pki"
        self.supervisor = supervisor
        self.ports = ports

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def _issue_certificates(self) -> tuple[pki.KeyPair, dict[str, pki.KeyPair]]:
        ca = pki.create_ca(self.certs, "ca")
        front = pki.create_ca(self.certs, "front-proxy-ca")
        pki.service_account_keys(self.certs)
        pki.issue(
            front, self.certs / "front-proxy-client", common_name="front-proxy-client", client=True
        )
        pki.issue(
            ca,
            self.certs / "apiserver",
            common_name="kube-apiserver",
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            # 10.244.0.1: the worker node's address, where its pods reach the apiserver.
            ip_addresses=("127.0.0.1", "10.96.0.1", "10.244.0.1"),
        )
        pki.issue(
            ca,
            self.certs / "apiserver-kubelet-client",
            common_name="kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        )
        clients = {
            "admin": pki.issue(
                ca,
                self.certs / "admin",
                common_name="kubernetes-admin",
                organizations=("system:masters",),
                client=True,
            ),
            "scheduler": pki.issue(
                ca, self.certs / "scheduler", common_name="system:kube-scheduler", client=True
            ),
            "controller-manager": pki.issue(
                ca,
                self.certs / "controller-manager",
                common_name="system:kube-controller-manager",
                client=True,
            ),
        }
        return ca, clients

    def up(self) -> ControlPlane:
        for tool in ("etcd",):
            if shutil.which(tool) is None:
                raise TestbedError(f"{tool} is missing: apt-get install -y etcd-server")
        binaries = ensure_binaries()
        ca, clients = self._issue_certificates()
        kubeconfigs = {
            name: _write_kubeconfig(
                self.state / f"{name}.kubeconfig",
                kubeconfig(self.server, ca.cert, pair, name),
            )
            for name, pair in clients.items()
        }
        self._start_etcd()
        self._start_apiserver(binaries, ca)
        self._start_components(binaries, ca, kubeconfigs)
        self._wait_for_service_accounts(ca, clients["admin"])
        return ControlPlane(self.server, ca, clients["admin"], kubeconfigs["admin"])

    def _start_etcd(self) -> None:
        p = self.ports
        self.supervisor.start(
            "etcd",
            [
                "etcd",
                "--name=testbed",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{p.etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{p.etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster=testbed=http://127.0.0.1:{p.etcd_peer}",
                "--quota-backend-bytes=4294967296",
            ],
        )
        self.supervisor.wait_until("etcd", lambda: port_open(p.etcd_client), what="client port")

    def _start_apiserver(self, binaries: Path, ca: pki.KeyPair) -> None:
        self.supervisor.start(
            "kube-apiserver",
            apiserver_argv(binaries / "kube-apiserver", self.ports, self.certs, ca),
        )
        admin = pki.KeyPair(self.certs / "admin.crt", self.certs / "admin.key")
        self.supervisor.wait_until(
            "kube-apiserver",
            lambda: https_ok(f"{self.server}/readyz", ca=ca.cert, cert=admin.cert, key=admin.key),
            what="/readyz",
        )

    def _start_components(
        self, binaries: Path, ca: pki.KeyPair, kubeconfigs: dict[str, Path]
    ) -> None:
        sched = kubeconfigs["scheduler"]
        # The default client rate (50 QPS) would cap binding at ~50 pods/s and hide the
        # node agent's own speed in benchmarks; busy production clusters raise it too.
        sched_config = self.state / "scheduler.yaml"
        sched_config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": str(sched), "qps": 500, "burst": 1000},
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        self.supervisor.start(
            "kube-scheduler",
            [
                str(binaries / "kube-scheduler"),
                f"--config={sched_config}",
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.scheduler}",
            ],
        )
        cm = kubeconfigs["controller-manager"]
        self.supervisor.start(
            "kube-controller-manager",
            [
                str(binaries / "kube-controller-manager"),
                f"--kubeconfig={cm}",
                f"--authentication-kubeconfig={cm}",
                f"--authorization-kubeconfig={cm}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.controller_manager}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.certs / 'sa.key'}",
                f"--root-ca-file={ca.cert}",
                f"--cluster-signing-cert-file={ca.cert}",
                f"--cluster-signing-key-file={ca.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--node-monitor-grace-period=20s",
                "--node-monitor-period=2s",
            ],
        )
        for name, port in (
            ("kube-scheduler", self.ports.scheduler),
            ("kube-controller-manager", self.ports.controller_manager),
        ):
            self.supervisor.wait_until(name, partial(port_open, port), what="secure port")

    def _wait_for_service_accounts(self, ca: pki.KeyPair, admin: pki.KeyPair) -> None:
        # Pods are refused until the default ServiceAccount exists.
        url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        self.supervisor.wait_until(
            "kube-controller-manager",
            lambda: https_ok(url, ca=ca.cert, cert=admin.cert, key=admin.key),
            what="default ServiceAccount",
        )

    def down(self) -> None:
        for name in ("kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"):
            self.supervisor.stop(name)
