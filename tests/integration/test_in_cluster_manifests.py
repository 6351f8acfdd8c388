"""The in-cluster manifests against the real apiserver, and the ServiceAccount's rights.

Every manifest and every kustomization passes a server-side dry run (schema, defaulting,
admission, Pod Security); the agent config each one ships is valid and fits the mounts
of the Deployment it ships with; and ``kubectl auth can-i`` as ``vkpy:vkpy`` shows the
RBAC grants what the agent uses and nothing it does not. The agent running under that
account is in test_in_cluster.py.
"""

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vkpy.config import load
from vkpy.errors import ConfigError

from .helpers import kubectl

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
FILES = sorted(
    p
    for p in (*MANIFESTS.glob("*.yaml"), *MANIFESTS.glob("operator/*.yaml"))
    if p.name != "kustomization.yaml"
)
OVERLAYS = sorted(p.parent for p in (ROOT / "examples/deploy").glob("*/kustomization.yaml"))
AGENT = "system:serviceaccount:vkpy:vkpy"
CONFIG = "/etc/vkpy/config.yaml"


def test_there_is_something_to_check():
    names = {str(p.relative_to(MANIFESTS)) for p in FILES}
    assert {"namespace.yaml", "rbac.yaml", "deployment.yaml", "configmap.yaml"} <= names
    assert {"operator/rbac.yaml", "operator/deployment.yaml"} <= names
    assert {"podman", "slurm"} <= {p.name for p in OVERLAYS}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_manifest_passes_a_server_dry_run(testbed, agent_account, path):
    result = kubectl(testbed, "apply", "--dry-run=server", "-f", str(path))
    assert result.returncode == 0, result.stderr
    # The vkpy namespace warns about anything outside the "restricted" Pod Security
    # Standard: the agent's Deployment must not draw a warning.
    assert "Warning" not in result.stderr, result.stderr


@pytest.mark.parametrize("directory", [MANIFESTS, *OVERLAYS], ids=lambda p: p.name)
def test_every_kustomization_builds_and_passes_a_server_dry_run(testbed, agent_account, directory):
    built = kubectl(testbed, "kustomize", str(directory))
    assert built.returncode == 0, built.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(built.stdout)}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "Deployment", "ConfigMap"} <= kinds
    applied = kubectl(testbed, "apply", "-k", str(directory), "--dry-run=server")
    assert applied.returncode == 0, applied.stderr


def rendered(directory: Path) -> dict[str, dict[str, Any]]:
    """The kustomization's objects by kind (one of each kind that matters here)."""
    built = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True
    )
    return {d["kind"]: d for d in yaml.safe_load_all(built.stdout) if d}


def config_document(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(objects["ConfigMap"]["data"]["config.yaml"])
    return document


def mount_of(deployment: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The agent container's volume mount ``path`` lies on (the deepest one)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    mounts = [
        m
        for m in container["volumeMounts"]
        if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    return max(mounts, key=lambda m: len(m["mountPath"]), default=None)


def test_the_base_config_names_the_backend_as_missing(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_document(rendered(MANIFESTS))))
    with pytest.raises(ConfigError) as error:
        load(config)
    assert "backend" in str(error.value) and "set-by-an-overlay" in str(error.value)


@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_ships_a_valid_config_that_fits_its_deployment(
    tmp_path, monkeypatch, directory
):
    objects = rendered(directory)
    document = config_document(objects)
    # The overlay fills in the backend (and names the node); the rest is the base's.
    base = config_document(rendered(MANIFESTS))
    assert {k: v for k, v in document.items() if k not in ("backend", "node")} == {
        k: v for k, v in base.items() if k not in ("backend", "node")
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("VKPY_NODE__ADVERTISE_ADDRESS", "10.244.1.7")  # as the downward API
    settings = load(config)
    assert settings.node.advertise_address == "10.244.1.7"
    assert settings.backend.kind == directory.name

    deployment = objects["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["run", "--config", CONFIG]
    assert mount_of(deployment, CONFIG)["subPath"] == "config.yaml"
    env = {e["name"]: e for e in container["env"]}
    assert env["VKPY_NODE__ADVERTISE_ADDRESS"]["valueFrom"]["fieldRef"] == {
        "fieldPath": "status.podIP"
    }
    ports = {p["containerPort"] for p in container["ports"]}
    assert {settings.kubelet_api.port, settings.kubelet_api.health_port} <= ports
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    # The root filesystem is read-only: whatever the agent writes must be on a mount.
    written = [str(settings.state_dir)]
    if settings.backend.kind == "podman":
        written += [
            str(settings.backend.socket),
            str(settings.backend.state_dir),
            str(settings.backend.memory_dir),
        ]
    for path in written:
        mount = mount_of(deployment, path)
        assert mount is not None and not mount.get("readOnly"), path
    ssh = getattr(settings.backend, "ssh", None)
    if ssh is not None:  # the key and known_hosts come from the vkpy-ssh Secret, required
        for path in (*ssh.key_files, ssh.known_hosts):
            assert mount_of(deployment, str(path))["name"] == "ssh", path
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["ssh"]["secret"]["optional"] is False


def test_the_deployment_is_least_privilege():
    deployment = rendered(MANIFESTS)["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == "vkpy"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Containerfile's user
    assert "USER 10001:10001" in (ROOT / "Containerfile").read_text()
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]
    ssh = next(v for v in pod["volumes"] if v["name"] == "ssh")["secret"]
    assert ssh == {"secretName": "vkpy-ssh", "optional": True, "defaultMode": 0o400}
    assert mount_of(deployment, "/etc/vkpy/ssh/known_hosts")["readOnly"] is True


# What the agent does, by code path (manifests/rbac.yaml names them too).
ALLOWED = [
    ("list", "pods", "-A"),  # the pod watch, fieldSelector=spec.nodeName
    ("watch", "pods", "-A"),
    ("delete", "pods", "-n", "default"),  # the final grace-0 delete
    ("patch", "pods", "--subresource=status", "-n", "default"),
    ("get", "nodes"),
    ("create", "nodes"),
    ("patch", "nodes"),
    ("patch", "nodes", "--subresource=status"),
    ("create", "events", "-n", "default"),
    ("patch", "events", "-n", "default"),
    ("get", "configmaps", "-n", "default"),  # env and volumes of pods
    ("get", "secrets", "-n", "default"),
    ("create", "serviceaccounts", "--subresource=token", "-n", "default"),
    ("create", "tokenreviews.authentication.k8s.io"),  # kubelet API authentication
    ("create", "subjectaccessreviews.authorization.k8s.io"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),  # serving certificate
    ("get", "certificatesigningrequests.certificates.k8s.io"),
    ("get", "leases.coordination.k8s.io", "-n", "kube-node-lease"),
    ("create", "leases.coordination.k8s.io", "-n", "kube-node-lease"),
    ("update", "leases.coordination.k8s.io", "-n", "kube-node-lease"),
]

DENIED = [
    ("delete", "nodes"),
    ("update", "nodes"),
    ("get", "nodes", "--subresource=proxy"),  # would reach every kubelet's API
    ("create", "pods", "-n", "default"),
    ("patch", "pods", "-n", "default"),
    # Status is only ever patched; nothing reads single pods (the watch has them).
    ("update", "pods", "--subresource=status", "-n", "default"),
    ("update", "nodes", "--subresource=status"),
    ("create", "pods", "--subresource=exec", "-n", "default"),
    ("delete", "namespaces"),
    ("create", "namespaces"),
    ("bind", "clusterroles"),
    ("escalate", "clusterroles"),
    ("create", "clusterrolebindings"),
    ("create", "rolebindings", "-n", "kube-system"),
    ("update", "roles", "-n", "kube-node-lease"),
    ("list", "secrets", "-A"),
    ("list", "secrets", "-n", "default"),
    ("watch", "secrets", "-A"),
    ("list", "configmaps", "-A"),
    ("update", "leases.coordination.k8s.io", "-n", "kube-system"),
    ("create", "leases.coordination.k8s.io", "-n", "default"),
    ("delete", "leases.coordination.k8s.io", "-n", "kube-node-lease"),
    ("update", "certificatesigningrequests.certificates.k8s.io", "--subresource=approval"),
    ("delete", "certificatesigningrequests.certificates.k8s.io"),
    ("create", "serviceaccounts", "-n", "default"),
    ("impersonate", "users"),
    ("*", "*"),
]


def can_i(testbed, check: tuple[str, ...], who: str = AGENT) -> str:
    result = kubectl(testbed, "auth", "can-i", *check, f"--as={who}")
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr  # an answer, not an error
    return answer


@pytest.mark.parametrize("check", ALLOWED, ids=" ".join)
def test_the_account_may_do_what_the_agent_does(testbed, agent_account, check):
    assert can_i(testbed, check) == "yes"


@pytest.mark.parametrize("check", DENIED, ids=" ".join)
def test_the_account_may_do_nothing_else(testbed, agent_account, check):
    assert can_i(testbed, check) == "no"


OPERATOR = "system:serviceaccount:vkpy:vkpy-operator"
VN = "virtualnodes.vkpy.io"
# What the operator does beyond its nodes' own rules (manifests/operator/rbac.yaml).
OPERATOR_ALLOWED = [
    ("list", VN, "-A"),  # kopf's watch
    ("watch", VN, "-A"),
    ("patch", VN, "-n", "default"),  # its finalizer and bookkeeping annotations
    ("patch", VN, "--subresource=status", "-n", "default"),
    ("delete", "nodes"),  # Drain
    ("list", "pods", "-A"),  # the nodes' pod watch; Drain lists a node's pods
    ("create", "leases.coordination.k8s.io", "-n", "vkpy"),  # --leader-elect
    ("get", "leases.coordination.k8s.io/vkpy-operator", "-n", "vkpy"),
    ("update", "leases.coordination.k8s.io/vkpy-operator", "-n", "vkpy"),
]
OPERATOR_DENIED = [
    ("create", VN, "-n", "default"),  # VirtualNodes are the users'
    ("delete", VN, "-n", "default"),
    ("update", VN, "-n", "default"),
    ("list", "namespaces"),  # kopf scans nothing: exact namespaces, one resource
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "leases.coordination.k8s.io/other", "-n", "vkpy"),
    ("update", "leases.coordination.k8s.io/vkpy-operator", "-n", "default"),
    ("list", "secrets", "-A"),
    ("delete", "pods", "--subresource=eviction", "-n", "default"),
    ("update", "certificatesigningrequests.certificates.k8s.io", "--subresource=approval"),
    ("*", "*"),
]


@pytest.fixture(scope="module")
def operator_account(testbed, agent_account) -> None:
    done = kubectl(
        testbed,
        *("apply", "-f", "manifests/operator/virtualnode-crd.yaml"),
        *("-f", "manifests/operator/rbac.yaml"),
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("check", OPERATOR_ALLOWED, ids=" ".join)
def test_the_operator_may_do_what_it_does(testbed, operator_account, check):
    assert can_i(testbed, check, OPERATOR) == "yes"


@pytest.mark.parametrize("check", OPERATOR_DENIED, ids=" ".join)
def test_the_operator_may_do_nothing_else(testbed, operator_account, check):
    assert can_i(testbed, check, OPERATOR) == "no"
