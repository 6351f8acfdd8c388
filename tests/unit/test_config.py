import pytest

from vkpy.cli import main
from vkpy.config import load
from vkpy.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_file_then_environment_then_flags(tmp_path, monkeypatch):
    path = write(tmp_path, "node: {name: from-file, labels: {site: a}}\nlease_renew_seconds: 5\n")
    monkeypatch.setenv("VKPY_NODE__NAME", "from-env")
    monkeypatch.setenv("VKPY_LEASE_RENEW_SECONDS", "7")
    monkeypatch.setenv("VKPY_TESTBED", "/unrelated/variable/is/ignored")
    settings = load(path)
    assert settings.node.name == "from-env"
    assert settings.node.labels == {"site": "a"}
    assert settings.lease_renew_seconds == 7
    assert load(path, {"node": {"name": "from-flag"}}).node.name == "from-flag"


def test_defaults_are_usable_without_a_file(monkeypatch):
    settings = load(None)
    assert settings.backend.kind == "podman"
    assert settings.lease_duration_seconds == 40
    assert settings.lease_renew_seconds == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node: {name: Not_A_DNS_Name}", "node.name: String should match pattern"),
        ("backend: {kind: lsf}", "backend: Input tag 'lsf' found using 'kind'"),
        ("kubelet_api: {port: -1}", "kubelet_api.port: Input should be greater than or equal to 0"),
        (
            "kubelet_api: {port: 70000}",
            "kubelet_api.port: Input should be less than or equal to 65535",
        ),
        ("node: {advertise_address: not-an-ip}", "node.advertise_address"),
        ("lease_renew: 3", "lease_renew: Extra inputs are not permitted"),
        ("- a list", "the top level must be a mapping"),
        ("node: {name: [unclosed", "not valid YAML"),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(write(tmp_path, text))


def test_check_config_command(tmp_path, capsys):
    assert main(["check-config", str(write(tmp_path, "node: {name: ok}"))]) == 0
    assert '"name": "ok"' in capsys.readouterr().out
    assert main(["check-config", str(write(tmp_path, "node: {name: Bad_}"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vkpy: ") and "node.name" in err and err.count("\n") == 1


def test_missing_file_is_one_clear_line(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read: No such file or directory" in capsys.readouterr().err
