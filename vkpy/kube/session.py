"""The API client's HTTP session, with the environment read once instead of per request.

kubernetes_asyncio opens its aiohttp session with ``trust_env=True``. aiohttp then looks
up ``.netrc`` and the proxy variables in a worker thread on every request: two thread
hops per request, about a third of the agent's CPU per pod with the instant backend. The
proxy the environment names for the API server (``HTTPS_PROXY``, ``NO_PROXY``, as
kubectl reads them) is looked up here once and passed with every request; a kubeconfig's
own ``proxy-url`` wins. ``.netrc`` is no way to authenticate to an API server.
"""

from __future__ import annotations

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio.client import ApiClient
from yarl import URL

READ_BUFFER = 2**21  # as kubernetes_asyncio sets it: watch events of large objects


def env_proxy(host: str) -> tuple[str | None, dict[str, str]]:
    """The proxy URL and its headers that the environment names for ``host``."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(host))
    except LookupError:
        return None, {}
    headers = {"Proxy-Authorization": auth.encode()} if auth is not None else {}
    return str(proxy), headers


async def read_environment_once(api: ApiClient) -> None:
    """Give ``api`` a session that does not consult the environment per request."""
    rest = api.rest_client
    if not rest.proxy:
        proxy, headers = env_proxy(str(api.configuration.host))
        if proxy is not None:
            rest.proxy = proxy
            rest.proxy_headers = {**headers, **(rest.proxy_headers or {})}
    trusting: aiohttp.ClientSession = rest.pool_manager
    connector = trusting.connector
    trusting.detach()  # the connector, its TLS context and pool, move to the new session
    rest.pool_manager = aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=READ_BUFFER
    )
