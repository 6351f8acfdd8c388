from pathlib import Path

import pytest

from vkpy.backend import Backend, LogReader
from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.backends.slurm.build import build_slurm_backend
from vkpy.config import SlurmConfig, load
from vkpy.errors import ConfigError
from vkpy.testing.slurm import Slurm
from vkpy.testing.slurm_config import write_slurm_agent_config
from vkpy.testing.sshd import Ssh
from vkpy.transport import LocalRunner, SshRunner

SSH = Ssh("127.0.0.1", 22222, "vkpyuser", Path("/tb/ssh/id_ed25519"), Path("/tb/ssh/known_hosts"))
SLURM = Slurm(Path("/var/lib/vkpy-testbed/slurm/slurm.conf"))


def test_the_testbed_config_loads_as_an_agent_config(tmp_path):
    path = write_slurm_agent_config(tmp_path / "slurm.yaml", SSH, SLURM)
    settings = load(path)
    backend = settings.backend
    assert isinstance(backend, SlurmConfig)
    assert backend.ssh is not None
    assert (backend.ssh.host, backend.ssh.port, backend.ssh.user) == (
        "127.0.0.1",
        22222,
        "vkpyuser",
    )
    assert backend.ssh.key_files == [SSH.client_key]
    assert backend.ssh.known_hosts == SSH.known_hosts
    assert not backend.ssh.accept_new_host_keys
    assert (backend.runtime, backend.accounting, backend.partition) == (
        "podman",
        "jobcomp",
        "debug",
    )
    assert settings.node.name == "vkpy-slurm" and settings.kubelet_api.port == 10251


def test_environment_overrides_nested_ssh_fields(tmp_path, monkeypatch):
    path = write_slurm_agent_config(tmp_path / "slurm.yaml", SSH, SLURM)
    monkeypatch.setenv("VKPY_BACKEND__SSH__POOL_SIZE", "3")
    settings = load(path)
    assert isinstance(settings.backend, SlurmConfig)
    assert settings.backend.ssh is not None and settings.backend.ssh.pool_size == 3


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("backend: {kind: slurm, work_dir: 'a:b'}", "backend.slurm.work_dir"),
        ("backend: {kind: slurm, work_dir: '~/vkpy'}", "backend.slurm.work_dir"),
        ("backend: {kind: slurm, runtime: docker}", "backend.slurm.runtime"),
        ("backend: {kind: slurm, runtime_path: 'A=B'}", "backend.slurm.runtime_path"),
        ("backend: {kind: slurm, accounting: slurmdbd}", "backend.slurm.accounting"),
        ("backend: {kind: slurm, ssh: {host: h}}", "backend.slurm.ssh.user"),
        ("backend: {kind: slurm, ssh: {host: h, user: u, pool_size: 0}}", "pool_size"),
        ("backend: {kind: slurm, ssh: {host: h, user: u, max_sessions: 3}}", "max_log_streams"),
        ("backend: {kind: slurm, partition_name: x}", "Extra inputs are not permitted"),
    ],
)
def test_bad_slurm_config_names_the_field(tmp_path, text, field):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=field):
        load(path)


def test_the_runner_follows_the_config():
    over_ssh = build_slurm_backend(
        SlurmConfig.model_validate({"ssh": {"host": "login", "user": "me"}}), node_name="n"
    )
    assert isinstance(over_ssh, SlurmBackend) and isinstance(over_ssh.runner, SshRunner)
    assert over_ssh.runner.target == "ssh://me@login:22"
    local = build_slurm_backend(SlurmConfig(), node_name="n")
    assert isinstance(local.runner, LocalRunner)
    assert local.kind == "slurm"
    assert isinstance(local, Backend) and isinstance(local, LogReader)
