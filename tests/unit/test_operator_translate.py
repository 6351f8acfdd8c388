"""A VirtualNode's spec into an agent's Settings: the config file's keys, unchanged."""

import base64
import stat
from pathlib import Path

import pytest

from vkpy.config import SlurmConfig
from vkpy.errors import ConfigError, KubeApiError
from vkpy.operator import secrets as secret_files
from vkpy.operator.spec import SecretKeyRef
from vkpy.operator.translate import Defaults, node_name, node_settings, on_delete, secret_refs

ANY = "0.0.0.0"  # noqa: S104 - the address a pod listens on

SLURM = {
    "node": {"labels": {"site": "x"}},
    "backend": {
        "kind": "slurm",
        "partition": "debug",
        "ssh": {
            "host": "login.example.org",
            "user": "alice",
            "key_secret": {"name": "ssh", "key": "id_ed25519"},
            "known_hosts_secret": {"name": "ssh", "key": "known_hosts"},
        },
    },
    "status_poll_seconds": 2,
}


def settings(spec, *, name="vn", port=10300, files=None, **defaults):
    return node_settings(
        name=name,
        spec=spec,
        port=port,
        secret_files=files or {},
        defaults=Defaults(state_dir=Path("/state"), **defaults),
    )


def test_a_slurm_spec_becomes_the_agent_settings():
    files = {"key_secret": Path("/s/key"), "known_hosts_secret": Path("/s/kh")}
    result = settings(SLURM, files=files)
    assert result.node.name == "vn"  # the VirtualNode's name without spec.node.name
    assert result.node.labels == {"site": "x"}
    assert isinstance(result.backend, SlurmConfig)
    assert result.backend.partition == "debug"
    assert result.backend.ssh is not None
    assert result.backend.ssh.key_files == [Path("/s/key")]
    assert result.backend.ssh.known_hosts == Path("/s/kh")
    assert result.backend.ssh.use_agent is False
    assert result.kubelet_api.port == 10300 and result.kubelet_api.health_port == 0
    assert result.state_dir == Path("/state/nodes/vn")
    assert result.status_poll_seconds == 2


def test_the_node_name_comes_from_the_spec_when_given():
    spec = {"node": {"name": "hpc-1"}, "backend": {"kind": "podman"}}
    assert node_name("vn", spec) == "hpc-1"
    assert settings(spec).node.name == "hpc-1"
    assert settings(spec).state_dir == Path("/state/nodes/hpc-1")


def test_the_operator_defaults_fill_addresses_the_spec_leaves_out():
    spec = {"backend": {"kind": "podman"}}
    result = settings(spec, kubelet_address=ANY, advertise_address="10.1.2.3")
    assert result.kubelet_api.address == ANY
    assert result.node.advertise_address == "10.1.2.3"
    spec = {"backend": {"kind": "podman"}, "kubelet_api": {"address": "127.0.0.2"}}
    assert settings(spec, kubelet_address=ANY).kubelet_api.address == "127.0.0.2"


def test_the_operator_environment_does_not_reach_a_node(monkeypatch):
    monkeypatch.setenv("VKPY_NODE__NAME", "from-env")
    monkeypatch.setenv("VKPY_STATUS_POLL_SECONDS", "99")
    result = settings({"backend": {"kind": "podman"}})
    assert result.node.name == "vn" and result.status_poll_seconds == 5.0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"backend": {"kind": "podman"}, "kubelet_api": {"port": 1}}, "kubelet_api.port"),
        ({"backend": {"kind": "podman"}, "state_dir": "/x"}, "state_dir"),
        ({"backend": {"kind": "podman", "state_dir": "/x"}}, "backend.state_dir"),
        (
            {"backend": {"kind": "slurm", "ssh": {"host": "h", "user": "u", "key_files": ["/k"]}}},
            "backend.ssh.key_files",
        ),
    ],
)
def test_fields_the_operator_sets_are_refused(spec, field):
    with pytest.raises(ConfigError, match=rf"spec\.{field}: set by the operator"):
        settings(spec)


def test_an_invalid_spec_names_the_field():
    with pytest.raises(ConfigError, match=r"backend\.slurm\.partition"):
        settings({"backend": {"kind": "slurm", "partition": 3}})
    with pytest.raises(ConfigError, match="backend"):
        settings({"backend": {"kind": "lsf"}})


def test_secret_references_by_field():
    refs = secret_refs(SLURM)
    assert refs == {
        "key_secret": SecretKeyRef(name="ssh", key="id_ed25519"),
        "known_hosts_secret": SecretKeyRef(name="ssh", key="known_hosts"),
    }
    # No known_hosts Secret: an empty file, never the operator's own ~/.ssh/known_hosts.
    bare = {"backend": {"kind": "slurm", "ssh": {"host": "h", "user": "u"}}}
    assert secret_refs(bare) == {"known_hosts_secret": None}
    assert secret_refs({"backend": {"kind": "podman"}}) == {}
    with pytest.raises(ConfigError, match="key_secret"):
        secret_refs({"backend": {"ssh": {"key_secret": {"name": "x"}}}})


def test_the_delete_policy_defaults_to_drain():
    assert on_delete({}) == "Drain"
    assert on_delete({"on_delete": "Orphan"}) == "Orphan"
    with pytest.raises(ConfigError, match="on_delete"):
        on_delete({"on_delete": "Keep"})
    assert "on_delete" not in settings({"backend": {"kind": "podman"}, "on_delete": "Orphan"})


class Secrets:
    def __init__(self, data):
        self.data = data

    async def get(self, path):
        name = path.rsplit("/", 1)[-1]
        if name not in self.data:
            raise KubeApiError("not found", status=404)
        encoded = {k: base64.b64encode(v).decode() for k, v in self.data[name].items()}
        return {"data": encoded}


async def test_secrets_become_private_files(tmp_path):
    kube = Secrets({"ssh": {"id_ed25519": b"KEY", "known_hosts": b"host ssh-ed25519 AAAA"}})
    files, digest = await secret_files.materialise(kube, "ns", secret_refs(SLURM), tmp_path)
    assert files["key_secret"].read_bytes() == b"KEY"
    assert stat.S_IMODE(files["key_secret"].stat().st_mode) == 0o600
    assert files["known_hosts_secret"].read_bytes() == b"host ssh-ed25519 AAAA"
    kube.data["ssh"]["id_ed25519"] = b"OTHER"
    _, changed = await secret_files.materialise(kube, "ns", secret_refs(SLURM), tmp_path)
    assert changed != digest
    gone, nokey = SecretKeyRef(name="gone", key="k"), SecretKeyRef(name="ssh", key="nope")
    with pytest.raises(ConfigError, match="Secret ns/gone not found"):
        await secret_files.materialise(kube, "ns", {"k": gone}, tmp_path)
    with pytest.raises(ConfigError, match="has no key 'nope'"):
        await secret_files.materialise(kube, "ns", {"k": nokey}, tmp_path)


def test_the_example_virtual_nodes_are_valid():
    import yaml

    root = Path(__file__).resolve().parents[2]
    documents = list(yaml.safe_load_all((root / "examples/operator/virtualnodes.yaml").read_text()))
    kinds = set()
    for vn in documents:
        refs = secret_refs(vn["spec"])
        files = {field: Path(f"/s/{field}") for field in refs}
        result = settings(vn["spec"], name=vn["metadata"]["name"], files=files)
        kinds.add(result.backend.kind)
    assert kinds == {"podman", "slurm", "htcondor"}
