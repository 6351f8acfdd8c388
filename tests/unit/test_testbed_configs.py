from pathlib import Path

from vkpy.testing import controlplane, pki, slurm, sshd


def _settings(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in text.splitlines()
        if "=" in line and " " not in line.split("=", 1)[0]
    )


def test_slurm_conf_uses_testbed_paths_and_ports():
    conf = slurm.slurm_conf(
        shared=Path("/s"), host="h", ports=slurm.SlurmPorts(1, 2), cpus=8, memory_mb=100
    )
    settings = _settings(conf)
    assert settings["SlurmctldHost"] == "h(127.0.0.1)"
    assert settings["AuthInfo"] == "socket=/s/munge/munge.socket"
    assert settings["SlurmctldPort"] == "1"
    assert settings["JobCompType"] == "jobcomp/filetxt"
    assert "NodeName=h NodeAddr=127.0.0.1 CPUs=8 RealMemory=100 State=UNKNOWN" in conf.splitlines()


def test_sshd_config_is_key_only_on_loopback():
    text = sshd.sshd_config(
        port=2222,
        host_key=Path("/k"),
        pid_file=Path("/p"),
        user="u",
        slurm_conf=Path("/c"),
        extra_path=Path("/x"),
    )
    lines = set(text.splitlines())
    assert {
        "ListenAddress 127.0.0.1",
        "PasswordAuthentication no",
        "PermitRootLogin no",
        "AllowUsers u",
        "SetEnv SLURM_CONF=/c PATH=/x:/usr/local/bin:/usr/bin:/bin",
    } <= lines


def test_apiserver_verifies_kubelets_against_the_cluster_ca(tmp_path):
    ca = pki.KeyPair(tmp_path / "ca.crt", tmp_path / "ca.key")
    argv = controlplane.apiserver_argv(
        Path("/bin/kube-apiserver"), controlplane.ControlPlanePorts(), tmp_path, ca
    )
    assert f"--kubelet-certificate-authority={ca.cert}" in argv
    assert "--authorization-mode=Node,RBAC" in argv
    assert all(a.startswith("--") for a in argv[1:])
