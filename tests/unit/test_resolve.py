import base64

import pytest

from vkpy.backend import POD_IP
from vkpy.errors import PodConfigError, UnsupportedPodFeature
from vkpy.resolve import Sources, expand, pod_spec, references, token_requests


def b64(text):
    return base64.b64encode(text.encode()).decode()


def make_pod(**spec):
    base = {
        "metadata": {
            "name": "web",
            "namespace": "team",
            "uid": "uid-1",
            "labels": {"app": "web", "tier": "x"},
            "annotations": {"a": "1"},
        },
        "spec": {
            "nodeName": "vk",
            "serviceAccountName": "runner",
            "containers": [{"name": "main", "image": "busybox"}],
        },
    }
    base["spec"].update(spec)
    return base


SOURCES = Sources(
    config_maps={
        "settings": {
            "data": {"MODE": "fast", "file.txt": "hello"},
            "binaryData": {"blob": b64("\x00\x01")},
        }
    },
    secrets={"creds": {"data": {"PASSWORD": b64("s3cr3t; $(rm -rf /)"), "key": b64("K")}}},
    tokens={("", 3607): "token-value"},
)


def test_env_from_values_configmaps_secrets_and_the_downward_api():
    container = {
        "name": "main",
        "image": "busybox",
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "PLAIN", "value": "x"},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
            {
                "name": "PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "COMBINED", "value": "$(POD)-$(MODE)-$$(POD)-$(UNKNOWN)"},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
        ],
        "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
        "args": ["--name=$(POD)"],
    }
    spec = pod_spec(make_pod(containers=[container]), SOURCES, node_ip="10.0.0.9")
    env = {e.name: e.value for e in spec.containers[0].env}
    assert env["CFG_MODE"] == "fast"
    assert env["PASSWORD"] == "s3cr3t; $(rm -rf /)"
    assert env["POD"] == "web"
    assert env["APP"] == "web"
    assert env["HOST"] == "10.0.0.9"
    assert env["COMBINED"] == "web-fast-$(POD)-$(UNKNOWN)"
    assert env["MEM"] == "64"
    assert spec.containers[0].args == ("--name=web",)
    assert spec.containers[0].resources.cpu_millis == 250
    assert spec.containers[0].resources.memory_bytes == 64 * 1024 * 1024
    assert "s3cr3t" not in repr(spec)


def test_volumes_become_files_with_the_pods_modes():
    volumes = [
        {
            "name": "cfg",
            "configMap": {"name": "settings", "items": [{"key": "file.txt", "path": "f.txt"}]},
        },
        {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o440}},
        {
            "name": "picked",
            "secret": {
                "secretName": "creds",
                "items": [{"key": "key", "path": "k", "mode": 0o400}],
            },
        },
        {"name": "plain", "secret": {"secretName": "creds"}},
        {
            "name": "meta",
            "downwardAPI": {
                "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
            },
        },
        {
            "name": "token",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": "settings", "items": [{"key": "blob", "path": "blob"}]}},
                ]
            },
        },
        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    spec = pod_spec(make_pod(volumes=volumes), SOURCES, node_ip="10.0.0.9")
    by_name = {v.name: v for v in spec.volumes}
    assert [(f.path, f.content) for f in by_name["cfg"].files] == [("f.txt", b"hello")]
    assert by_name["sec"].sensitive
    # The kubelet's modes: defaultMode, an item's own mode, else 0644 (a container user
    # who is not root must read its secret).
    assert {f.mode for f in by_name["sec"].files} == {0o440}
    assert [(f.path, f.mode) for f in by_name["picked"].files] == [("k", 0o400)]
    assert {f.mode for f in by_name["plain"].files} == {0o644}
    assert by_name["meta"].files[0].content == b'app="web"\ntier="x"'
    token = {f.path: f for f in by_name["token"].files}
    assert token["token"].content == b"token-value"
    assert token["blob"].content == b"\x00\x01"
    assert by_name["token"].sensitive
    assert by_name["scratch"].kind == "emptyDir"
    assert by_name["scratch"].size_limit_bytes == 1 << 30


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}]},
            "volume data: type persistentVolumeClaim is not supported",
        ),
        ({"hostPID": True}, "hostPID is not supported"),
        (
            {"containers": [{"name": "main", "image": "b", "readinessProbe": {"exec": {}}}]},
            "container main: readiness probes are not supported",
        ),
        (
            {
                "containers": [
                    {
                        "name": "main",
                        "image": "b",
                        "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
                    }
                ]
            },
            "volume nope is not defined",
        ),
    ],
)
def test_unsupported_features_are_named(spec, message):
    with pytest.raises(UnsupportedPodFeature, match=message):
        pod_spec(make_pod(**spec), SOURCES, node_ip="10.0.0.9")


def test_missing_key_is_a_config_error():
    container = {
        "name": "main",
        "image": "b",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "absent"}}}],
    }
    with pytest.raises(PodConfigError, match="couldn't find key absent in secret team/creds"):
        pod_spec(make_pod(containers=[container]), SOURCES, node_ip="")


def test_references_and_tokens_are_collected():
    pod = make_pod(
        volumes=[
            {
                "name": "t",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "path": "token",
                                "audience": "vault",
                                "expirationSeconds": 600,
                            }
                        },
                        {"secret": {"name": "creds", "optional": True}},
                    ]
                },
            }
        ],
        containers=[
            {"name": "main", "image": "b", "envFrom": [{"configMapRef": {"name": "settings"}}]}
        ],
    )
    assert references(pod) == {("secret", "creds", True), ("configmap", "settings", False)}
    assert token_requests(pod) == {("vault", 600)}


def test_expand_matches_kubernetes():
    env = {"A": "1"}
    assert expand("$(A)$(B)$$(A)$$$(A)", env) == "1$(B)$(A)$1"


def resource_env(resources, *refs):
    """The values of one env variable per ``(resource, divisor)`` in ``refs``."""
    env = [
        {
            "name": f"V{i}",
            "valueFrom": {"resourceFieldRef": {"resource": r, **({"divisor": d} if d else {})}},
        }
        for i, (r, d) in enumerate(refs)
    ]
    container = {"name": "main", "image": "b", "env": env, "resources": resources}
    allocatable = {"cpu": "64", "memory": "256Gi", "ephemeral-storage": "1Ti", "pods": "110"}
    spec = pod_spec(
        make_pod(containers=[container]), SOURCES, node_ip="10.0.0.9", allocatable=allocatable
    )
    return [e.value for e in spec.containers[0].env]


def test_a_zero_divisor_counts_as_one_as_the_kubelet_does():
    limits = {"limits": {"cpu": "250m", "memory": "64Mi"}}
    assert resource_env(limits, ("limits.cpu", "0"), ("limits.memory", "0")) == [
        "1",
        str(64 * 2**20),
    ]
    # A downward-API file of the same.
    item = {
        "path": "mem",
        "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "0"},
    }
    pod = make_pod(
        containers=[{"name": "main", "image": "b", "resources": limits}],
        volumes=[{"name": "info", "downwardAPI": {"items": [item]}}],
    )
    (volume,) = pod_spec(pod, SOURCES, node_ip="10.0.0.9").volumes
    assert volume.files[0].content == str(64 * 2**20).encode()


def test_limits_not_set_read_the_nodes_allocatable_and_requests_not_set_are_zero():
    values = resource_env(
        {"requests": {"cpu": "500m", "memory": "1Gi"}},
        ("limits.cpu", None),
        ("limits.memory", "1Gi"),
        ("limits.ephemeral-storage", "1Gi"),
        ("requests.cpu", "1m"),
        ("requests.ephemeral-storage", None),
    )
    assert values == ["64", "256", "1024", "500", "0"]


def test_the_pod_ip_is_left_for_the_backend_until_the_pod_has_one():
    container = {
        "name": "main",
        "image": "b",
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": "http://$(POD_IP):80"},
        ],
        "args": ["--bind=$(POD_IP)"],
    }
    spec = pod_spec(make_pod(containers=[container]), SOURCES, node_ip="10.0.0.9")
    env = {e.name: e.value for e in spec.containers[0].env}
    assert env == {"POD_IP": POD_IP, "URL": f"http://{POD_IP}:80"}
    assert spec.needs_pod_ip
    filled = spec.with_pod_ip("10.88.0.7")
    assert {e.name: e.value for e in filled.containers[0].env} == {
        "POD_IP": "10.88.0.7",
        "URL": "http://10.88.0.7:80",
    }
    assert filled.containers[0].args == ("--bind=10.88.0.7",)
    assert not filled.needs_pod_ip
    # hostNetwork: the node's address; an adopted pod: the one it has.
    host = pod_spec(make_pod(containers=[container], hostNetwork=True), SOURCES, node_ip="10.0.0.9")
    assert host.containers[0].env[0].value == "10.0.0.9"
    known = make_pod(containers=[container])
    known["status"] = {"podIP": "10.88.0.3"}
    assert pod_spec(known, SOURCES, node_ip="10.0.0.9").containers[0].env[0].value == "10.88.0.3"
