"""The kubelet API over HTTPS, and an optional plain-HTTP health and metrics listener.

Routes of the HTTPS listener (every request authenticated and authorized first, as
the kubelet does, /healthz included):

    GET  /containerLogs/{namespace}/{pod}/{container}   container logs, streamed
    GET  /pods                                          this node's pods, a v1 PodList
    GET  /healthz                                       "ok"
    GET  /metrics                                       the agent's Prometheus metrics
    GET|POST /exec, /attach, /portForward              SPDY/3.1 or WebSocket sessions
                                                        (see `vkpy.kubeletapi.streaming`)
    /run, /stats/summary, /metrics/resource             501 Not Implemented: vkpy does
                                                        not serve them yet, and says so

The plain-HTTP listener (``health_port``, 127.0.0.1:10248 by default like the
kubelet's healthz port, 0 = off) serves /healthz, /readyz and /metrics without
authentication, for probes and scrapers that cannot present credentials. /healthz says
the agent is alive; /readyz also needs a healthy backend. They differ on purpose: a
restart cannot bring back an unreachable login node, so liveness must not fail on it.

Logs: the query is parsed like the kubelet's (`parse_log_query`); the pod must be one
the agent knows and the container one of its containers (else 404). Bytes come from
the backend's `LogReader` and are written as they come, each chunk sent at once; a
``follow`` stream ends when the reader ends or the client goes away (the handler is
cancelled and the reader closed). ``limitBytes`` is applied here, with `capped`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from vkpy import metrics
from vkpy.backend import LogReader, capped
from vkpy.config import KubeletApiConfig
from vkpy.errors import BackendError, BackendUnavailable, PodNotFound, UnsupportedLogOption
from vkpy.kubeletapi.auth import User
from vkpy.kubeletapi.logquery import parse_log_query
from vkpy.kubeletapi.protocols import PodLister, PodLookup, TlsProvider, container_names
from vkpy.kubeletapi.streaming.handlers import StreamingRoutes

logger = logging.getLogger(__name__)

# How long a log request waits for the reader's first bytes before it answers 200
# and streams: long enough that an unknown pod or container still gets its 404,
# short enough that `kubectl logs -f` on a quiet container starts at once.
FIRST_CHUNK_WAIT = 1.0
SHUTDOWN_SECONDS = 1.0
USER = web.RequestKey("user", User)
_PATHS = frozenset(
    {"containerLogs", "pods", "healthz", "metrics", "exec", "attach", "portForward", "run", "stats"}
)


class RequestAuth(Protocol):
    """Authenticates and authorizes a request; raises the aiohttp HTTP error to answer."""

    async def check(self, request: web.BaseRequest) -> User: ...


def _path_label(path: str) -> str:
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in _PATHS else "other"


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    metrics.count_kubelet_api_request(_path_label(request.path), response.status)
    user = request.get(USER)
    logger.debug(
        "%s %s -> %d (%s)",
        request.method,
        request.path,
        response.status,
        user.name if user is not None else "anonymous",
    )


def _not_supported(what: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        raise web.HTTPNotImplemented(
            text=f"{what} is not supported by this node: vkpy does not implement it yet"
        )

    return handler


async def _next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            logger.exception("closing a log stream failed")


def _reader_error(exc: BackendError) -> web.HTTPException:
    if isinstance(exc, PodNotFound):
        return web.HTTPNotFound(text=str(exc))
    if isinstance(exc, UnsupportedLogOption):
        return web.HTTPBadRequest(text=str(exc))
    if isinstance(exc, BackendUnavailable):
        return web.HTTPServiceUnavailable(text=f"the backend is unavailable: {exc}")
    return web.HTTPInternalServerError(text=f"cannot read the logs: {exc}")


class KubeletApiServer:
    """The kubelet API of one node. ``start`` binds the listeners, ``close`` stops them."""

    def __init__(
        self,
        *,
        node_name: str,
        config: KubeletApiConfig,
        tls: TlsProvider,
        auth: RequestAuth,
        find_pod: PodLookup,
        list_pods: PodLister,
        logs: LogReader | None,
        ready: Callable[[], bool] | None = None,
        streaming: StreamingRoutes | None = None,
    ) -> None:
        self.node_name = node_name
        self.config = config
        self._tls = tls
        self._auth = auth
        self._find_pod = find_pod
        self._list_pods = list_pods
        self._logs = logs
        self._ready = ready
        self._streaming = streaming
        self._runners: list[web.AppRunner] = []
        self._api_runner: web.AppRunner | None = None
        self._health_runner: web.AppRunner | None = None

    # ------------------------------------------------------------ applications

    def api_app(self) -> web.Application:
        """The HTTPS application: authentication first, then the kubelet's routes."""
        app = web.Application(middlewares=[self._authenticate])
        app.on_response_prepare.append(_on_prepare)
        add = app.router.add_route
        app.router.add_get(
            "/containerLogs/{namespace}/{pod}/{container}", self._container_logs, allow_head=False
        )
        app.router.add_get("/pods", self._pods, allow_head=False)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        if self._streaming is not None:
            self._streaming.add_to(app)
        else:
            for what, paths in (
                ("exec", ("/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}")),
                ("attach", ("/attach/{ns}/{pod}/{c}", "/attach/{ns}/{pod}/{uid}/{c}")),
                ("portForward", ("/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}")),
            ):
                for path in paths:
                    add("GET", path, _not_supported(what))
                    add("POST", path, _not_supported(what))
        for path in ("/run/{ns}/{pod}/{container}", "/run/{ns}/{pod}/{uid}/{container}"):
            add("POST", path, _not_supported("run"))
        app.router.add_get("/stats/summary", _not_supported("stats/summary"), allow_head=False)
        app.router.add_get(
            "/metrics/resource", _not_supported("metrics/resource"), allow_head=False
        )
        return app

    def health_app(self) -> web.Application:
        """The plain-HTTP application: /healthz, /readyz and /metrics, no authentication."""
        app = web.Application()
        app.on_response_prepare.append(_on_prepare)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        request[USER] = await self._auth.check(request)
        response: web.StreamResponse = await handler(request)
        return response

    # ------------------------------------------------------------ handlers

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, _request: web.Request) -> web.Response:
        if self._ready is not None and not self._ready():
            return web.Response(status=500, text="readyz check failed: the backend is unhealthy")
        return web.Response(text="ok")

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _pods(self, _request: web.Request) -> web.Response:
        listing = {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": list(self._list_pods()),
        }
        return web.Response(body=json.dumps(listing).encode(), content_type="application/json")

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        pod_name = request.match_info["pod"]
        container = request.match_info["container"]
        query = request.rel_url.query
        options = parse_log_query({key: query.getall(key) for key in query}, now=datetime.now(UTC))
        pod = self._find_pod(namespace, pod_name)
        if pod is None:
            raise web.HTTPNotFound(text=f"pod {pod_name!r} does not exist")
        if container not in container_names(pod):
            raise web.HTTPNotFound(text=f"container {container!r} not found in pod {pod_name!r}")
        if self._logs is None:
            raise web.HTTPNotImplemented(text="this node's backend does not serve container logs")
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        chunks = self._logs.logs(uid, container, options)
        return await self._stream(request, capped(chunks, options.limit_bytes))

    async def _stream(
        self, request: web.Request, chunks: AsyncIterator[bytes]
    ) -> web.StreamResponse:
        first = asyncio.ensure_future(_next_chunk(chunks))
        try:
            done, _ = await asyncio.wait({first}, timeout=FIRST_CHUNK_WAIT)
            if done:
                try:
                    chunk = first.result()
                except BackendError as exc:
                    raise _reader_error(exc) from exc
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                if not done:
                    chunk = await first
                while chunk is not None:
                    if chunk:
                        await response.write(chunk)
                    chunk = await _next_chunk(chunks)
            except BackendError as exc:  # the status is sent already: end the stream
                logger.warning("log stream of %s ended early: %s", request.path, exc)
            await response.write_eof()
            return response
        finally:
            if not first.done():
                first.cancel()
                await asyncio.wait({first})
            await _close(chunks)

    # ------------------------------------------------------------ lifecycle

    async def _serve(
        self, app: web.Application, address: str, port: int, *, tls: bool
    ) -> web.AppRunner:
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await runner.setup()
        context = self._tls.listening_context() if tls else None
        site = web.TCPSite(runner, address, port, ssl_context=context)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runners.append(runner)
        return runner

    async def start(self) -> None:
        """Listen on the HTTPS port and, unless it is 0, the health port.
        Raises OSError when a port cannot be bound."""
        try:
            self._api_runner = await self._serve(
                self.api_app(), self.config.address, self.config.port, tls=True
            )
            if self.config.health_port:
                self._health_runner = await self._serve(
                    self.health_app(),
                    self.config.health_address,
                    self.config.health_port,
                    tls=False,
                )
        except OSError:
            await self.close()
            raise
        logger.info("kubelet API on https://%s:%s", self.config.address, self.port)
        if self._health_runner is not None:
            logger.info(
                "health and metrics on http://%s:%s", self.config.health_address, self.health_port
            )

    async def close(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    @staticmethod
    def _bound_port(runner: web.AppRunner | None) -> int | None:
        if runner is None or not runner.addresses:
            return None
        return int(runner.addresses[0][1])

    @property
    def port(self) -> int | None:
        """The HTTPS port actually bound; None before ``start``."""
        return self._bound_port(self._api_runner)

    @property
    def health_port(self) -> int | None:
        """The plain-HTTP port actually bound; None when off or before ``start``."""
        return self._bound_port(self._health_runner)
