"""In-cluster credentials: the service-account directory and its override."""

import datetime
from pathlib import Path

import pytest
from kubernetes_asyncio.config import incluster_config

from vkpy.errors import ConfigError
from vkpy.kube.client import SERVICE_ACCOUNT_DIR, connect, service_account_dir
from vkpy.testing.pki import create_ca


@pytest.fixture
def in_cluster(monkeypatch, tmp_path):
    """The environment Kubernetes gives a pod, with the account directory in tmp_path."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("VKPY_SERVICE_ACCOUNT_DIR", str(tmp_path))
    (tmp_path / "token").write_text("token-of-the-account")
    create_ca(tmp_path, "ca")  # writes ca.crt (and ca.key, unused)
    return tmp_path


def test_the_default_is_where_kubernetes_mounts_the_account(monkeypatch):
    monkeypatch.delenv("VKPY_SERVICE_ACCOUNT_DIR", raising=False)
    assert service_account_dir() == Path("/var/run/secrets/kubernetes.io/serviceaccount")
    monkeypatch.setenv("VKPY_SERVICE_ACCOUNT_DIR", "")
    assert service_account_dir() == SERVICE_ACCOUNT_DIR


async def test_token_and_ca_come_from_the_override(in_cluster):
    api = await connect(None)
    try:
        configuration = api.configuration
        assert configuration.host == "https://10.96.0.1:443"
        assert configuration.ssl_ca_cert == str(in_cluster / "ca.crt")
        token = await configuration.get_api_key_with_prefix("BearerToken")
        assert token == "Bearer token-of-the-account"
    finally:
        await api.close()


async def test_a_rotated_token_is_read_again(in_cluster, monkeypatch):
    # Projected tokens are rotated by the kubelet; the loader re-reads the file once its
    # copy is older than the refresh period (a minute; no time at all here).
    monkeypatch.setattr(incluster_config, "TOKEN_REFRESH_PERIOD", datetime.timedelta(0))
    api = await connect(None)
    try:
        (in_cluster / "token").write_text("the-rotated-token")
        token = await api.configuration.get_api_key_with_prefix("BearerToken")
        assert token == "Bearer the-rotated-token"
    finally:
        await api.close()


async def test_an_ipv6_service_host_is_bracketed(in_cluster, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    api = await connect(None)
    try:
        assert api.configuration.host == "https://[fd00::1]:443"
    finally:
        await api.close()


async def test_a_missing_token_names_the_directory_and_the_variable(in_cluster):
    (in_cluster / "token").unlink()
    with pytest.raises(ConfigError) as error:
        await connect(None)
    assert str(in_cluster) in str(error.value)
    assert "$VKPY_SERVICE_ACCOUNT_DIR" in str(error.value)
    assert "token file does not exist" in str(error.value)


async def test_a_missing_ca_is_refused(in_cluster):
    (in_cluster / "ca.crt").unlink()
    with pytest.raises(ConfigError, match="certification file does not exist"):
        await connect(None)


async def test_a_garbled_ca_is_a_config_error(in_cluster):
    (in_cluster / "ca.crt").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot read Kubernetes credentials"):
        await connect(None)


async def test_an_explicit_kubeconfig_beats_the_service_account(in_cluster, tmp_path_factory):
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(
        """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://192.0.2.7:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: from-kubeconfig}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
    )
    api = await connect(kubeconfig)
    try:
        assert api.configuration.host == "https://192.0.2.7:6443"
    finally:
        await api.close()
