"""The API client's session reads the proxy environment once, not on every request."""

import base64

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from vkpy.kube.session import env_proxy, read_environment_once


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def client(host: str, proxy: str | None = None) -> ApiClient:
    configuration = Configuration(host=host)
    configuration.proxy = proxy
    return ApiClient(configuration)


def test_the_environments_proxy_is_found_with_its_credentials(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    proxy, headers = env_proxy("https://api.example:6443")
    assert proxy == "http://proxy.example:3128"
    assert headers == {"Proxy-Authorization": "Basic " + base64.b64encode(b"user:secret").decode()}


def test_no_proxy_and_no_variables_mean_a_direct_connection(monkeypatch):
    assert env_proxy("https://api.example:6443") == (None, {})
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.example")
    assert env_proxy("https://api.example:6443") == (None, {})


async def test_the_session_no_longer_trusts_the_environment_and_keeps_its_pool(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    api = client("https://api.example:6443")
    connector = api.rest_client.pool_manager.connector
    await read_environment_once(api)
    session = api.rest_client.pool_manager
    try:
        assert session.trust_env is False
        assert session.connector is connector  # its TLS context and limits with it
        assert api.rest_client.proxy == "http://proxy.example:3128"
    finally:
        await api.close()
    assert connector.closed


async def test_a_kubeconfigs_own_proxy_wins(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    api = client("https://api.example:6443", proxy="http://theirs.example:8080")
    await read_environment_once(api)
    try:
        assert api.rest_client.proxy == "http://theirs.example:8080"
        assert api.rest_client.pool_manager.trust_env is False
    finally:
        await api.close()
