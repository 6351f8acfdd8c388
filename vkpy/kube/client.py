"""A thin client for the Kubernetes API that works on plain dicts.

kubernetes_asyncio provides configuration (kubeconfig or in-cluster, token refresh)
and the authenticated aiohttp session; vkpy sends its own requests through it with
``_preload_content=False`` and decodes JSON itself, because deserializing into the
generated models is the CPU bottleneck at thousands of pods. Errors are translated
here, once, into `KubeApiError`.

In a pod, the credentials are the service account's token and CA in
``/var/run/secrets/kubernetes.io/serviceaccount``; ``VKPY_SERVICE_ACCOUNT_DIR`` names
another directory holding ``token`` and ``ca.crt`` (to run the agent outside a pod
exactly as it runs inside one, as the in-cluster tests do). The token file is re-read
every minute, so a rotated projected token is picked up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from vkpy.aio import backoff
from vkpy.errors import ConfigError, KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kube.session import read_environment_once

logger = logging.getLogger(__name__)

# Called before each request with (method, path); the agent counts requests with it.
RequestHook = Callable[[str, str], None]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# Enough parallel requests for a thousand pods' status writes, plus the watch streams.
CONNECTION_POOL_SIZE = 64

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_ACCOUNT_DIR_ENV = "VKPY_SERVICE_ACCOUNT_DIR"


def service_account_dir() -> Path:
    """Where the in-cluster token and CA are: ``$VKPY_SERVICE_ACCOUNT_DIR``, else the
    directory Kubernetes mounts into pods."""
    return Path(os.environ.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)


async def connect(kubeconfig: Path | None, *, pool_size: int = CONNECTION_POOL_SIZE) -> ApiClient:
    """An ApiClient from ``kubeconfig``, else the service account (in a pod, or as
    `service_account_dir` says), else ``$KUBECONFIG``; ``pool_size`` connections at most
    (each open watch holds one)."""
    configuration = Configuration()
    try:
        if kubeconfig is not None:
            await kube_config.load_kube_config(
                config_file=str(kubeconfig), client_configuration=configuration
            )
        elif "KUBERNETES_SERVICE_HOST" in os.environ:
            account = service_account_dir()
            try:
                kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration,
                    token_filename=str(account / "token"),
                    cert_filename=str(account / "ca.crt"),
                )
            except kube_config.ConfigException as exc:
                raise ConfigError(
                    f"cannot load in-cluster credentials from {account} "
                    f"(${SERVICE_ACCOUNT_DIR_ENV}): {exc}"
                ) from exc
        elif os.environ.get("KUBECONFIG"):
            # Passed explicitly: the library reads the variable once, at import time.
            await kube_config.load_kube_config(
                config_file=os.environ["KUBECONFIG"], client_configuration=configuration
            )
        else:
            raise ConfigError(
                "no Kubernetes credentials: pass --kubeconfig, set KUBECONFIG, "
                "or run in a pod with a service account"
            )
        configuration.connection_pool_maxsize = pool_size
        # Loads the CA file: an unreadable or garbled one is an OSError (ssl.SSLError).
        api = ApiClient(configuration)
        await read_environment_once(api)
        return api
    except kube_config.ConfigException as exc:
        raise ConfigError(f"cannot load Kubernetes credentials: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read Kubernetes credentials: {exc}") from exc


def _api_error(status: int, body: bytes, what: str) -> KubeApiError:
    try:
        message = json.loads(body).get("message") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")[:500]
    return KubeApiError(f"{what}: {status} {message}", status=status)


class Kube:
    """Requests to the Kubernetes API as dicts in, dicts out."""

    def __init__(self, api: ApiClient, *, on_request: RequestHook | None = None) -> None:
        self.api = api
        self._on_request = on_request

    @property
    def ca_file(self) -> str | None:
        return str(self.api.configuration.ssl_ca_cert or "") or None

    async def close(self) -> None:
        await self.api.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | aiohttp.ClientTimeout | None = 30.0,
    ) -> aiohttp.ClientResponse:
        if self._on_request is not None:
            self._on_request(method, path)
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        try:
            response: aiohttp.ClientResponse = await self.api.call_api(
                path,
                method,
                query_params=params,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            raise KubeApiError(f"{method} {path}: {exc.reason}", status=exc.status) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeApiError(f"{method} {path}: {exc!r}") from exc
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        """One request; the decoded JSON answer. Non-2xx raises KubeApiError with status."""
        response = await self._send(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        try:
            data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeApiError(f"{method} {path}: {exc!r}") from exc
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise _api_error(response.status, data, f"{method} {path}")
        decoded: JSON = json.loads(data) if data else {}
        return decoded

    async def get(self, path: str, **query: Any) -> JSON:
        return await self.request("GET", path, query=query)

    async def create(self, path: str, body: JSON) -> JSON:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def strategic_patch(self, path: str, body: JSON) -> JSON:
        return await self.request("PATCH", path, body=body, content_type=STRATEGIC_MERGE_PATCH)

    async def delete(self, path: str, body: JSON | None = None) -> JSON:
        return await self.request("DELETE", path, body=body)

    async def stream(
        self, path: str, *, query: Mapping[str, Any], read_timeout: float
    ) -> AsyncIterator[JSON]:
        """The events of one watch request, decoded; ends when the server closes it."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout)
        response = await self._send("GET", path, query=query, timeout=timeout)
        try:
            if response.status != 200:
                raise _api_error(response.status, await response.read(), f"WATCH {path}")
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeApiError(f"WATCH {path}: {exc!r}") from exc
        finally:
            response.release()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def sleep_backoff(attempt: int, *, base: float = 0.2, cap: float = 7.0) -> None:
    """The back-off the kubelet uses for lease and status conflicts."""
    await asyncio.sleep(backoff(attempt, first=base, cap=cap))
