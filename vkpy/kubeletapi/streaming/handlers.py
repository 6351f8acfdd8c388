"""The kubelet API's /exec, /attach and /portForward routes.

Each request is checked as the kubelet checks it (the query, the pod and container,
the backend's capability, the session cap) and answered with an HTTP error before any
upgrade. Exec and attach open the backend's `Process` before upgrading too, so a
container that cannot run the command gets a plain HTTP error. Then the connection
becomes SPDY/3.1 or a WebSocket, whichever the client asked for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from vkpy.config import KubeletApiConfig
from vkpy.errors import (
    BackendError,
    BackendUnavailable,
    ContainerNotRunning,
    PodNotFound,
    PortUnreachable,
    StreamingUnsupported,
)
from vkpy.kubeletapi.protocols import PodLookup, container_names
from vkpy.kubeletapi.spdy.transport import ByteReader, ByteWriter
from vkpy.kubeletapi.streaming import spdyexec, spdyforward, websocket
from vkpy.kubeletapi.streaming.channels import (
    EXEC_PROTOCOLS,
    FORWARD_PROTOCOLS,
    SPDY_TUNNEL,
    ChannelProtocol,
    negotiate,
    offered_protocols,
)
from vkpy.kubeletapi.streaming.options import BadStreamRequest, forwarded_ports, stream_options
from vkpy.kubeletapi.streaming.spdyserver import spdy_connection
from vkpy.kubeletapi.streaming.tunnel import WebSocketBytes
from vkpy.kubeletapi.streaming.upgrade import is_spdy_upgrade, negotiate_version, upgrade
from vkpy.remote import Attacher, Executor, PortForwarder, Process, StreamRequest, Tunnel

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def backend_error(exc: BackendError) -> web.HTTPException:
    """The HTTP answer for a backend that cannot open the session."""
    if isinstance(exc, PodNotFound):
        return web.HTTPNotFound(text=str(exc))
    if isinstance(exc, ContainerNotRunning | PortUnreachable):
        return web.HTTPBadRequest(text=str(exc))
    if isinstance(exc, StreamingUnsupported):
        return web.HTTPNotImplemented(text=str(exc))
    if isinstance(exc, BackendUnavailable):
        return web.HTTPServiceUnavailable(text=f"the backend is unavailable: {exc}")
    return web.HTTPInternalServerError(text=str(exc))


class StreamingRoutes:
    """Exec, attach and port-forward for one node's pods."""

    def __init__(
        self,
        *,
        config: KubeletApiConfig,
        find_pod: PodLookup,
        executor: Executor | None,
        attacher: Attacher | None,
        forwarder: PortForwarder | None,
        backend_kind: str,
    ) -> None:
        self._config = config
        self._find_pod = find_pod
        self._executor = executor
        self._attacher = attacher
        self._forwarder = forwarder
        self._kind = backend_kind
        self._sessions = asyncio.Semaphore(config.max_streaming_sessions)

    def add_to(self, app: web.Application) -> None:
        add = app.router.add_route
        for verb in ("GET", "POST"):
            for path in ("/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"):
                add(verb, path, self.exec)
            for path in ("/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"):
                add(verb, path, self.attach)
            for path in ("/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"):
                add(verb, path, self.port_forward)

    # ------------------------------------------------------------ checks

    def _pod_uid(self, request: web.Request, *, container: str | None) -> str:
        info = request.match_info
        pod = self._find_pod(info["ns"], info["pod"])
        if pod is None:
            raise web.HTTPNotFound(text="pod does not exist")
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        if info.get("uid") and info["uid"] != uid:
            raise web.HTTPNotFound(text="pod not found")
        if container is not None and container not in container_names(pod):
            raise web.HTTPNotFound(text=f'container not found ("{container}")')
        return uid

    def _unsupported(self, what: str) -> web.HTTPException:
        return web.HTTPNotImplemented(
            text=f"{what} is not supported by this node's {self._kind} backend"
        )

    async def _limited(self, request: web.Request, serve: Handler) -> web.StreamResponse:
        if self._sessions.locked():
            raise web.HTTPTooManyRequests(
                text=f"too many streaming sessions on this node (at most "
                f"{self._config.max_streaming_sessions})"
            )
        async with self._sessions:
            return await serve(request)

    # ------------------------------------------------------------ exec and attach

    async def exec(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, attach=False)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, attach=True)

    async def _remote_command(self, request: web.Request, *, attach: bool) -> web.StreamResponse:
        query = request.rel_url.query
        try:
            options = stream_options({k: query.getall(k) for k in query}, command_needed=not attach)
        except BadStreamRequest as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        container = request.match_info["container"]
        uid = self._pod_uid(request, container=container)
        opener = self._opener(attach=attach)
        ws_protocol, version = self._handshake(request)
        wanted = StreamRequest(
            uid=uid,
            container=container,
            stdin=options.stdin,
            stdout=options.stdout,
            stderr=options.stderr,
            tty=options.tty,
            command=options.command,
        )

        async def serve(request: web.Request) -> web.StreamResponse:
            try:
                process = await opener(wanted)
            except BackendError as exc:
                raise backend_error(exc) from exc
            if ws_protocol is not None:
                offered = bool(
                    offered_protocols(request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, ""))
                )
                return await websocket.serve_session(
                    request,
                    process,
                    options,
                    ws_protocol,
                    offered=offered,
                    idle_timeout=self._config.streaming_idle_timeout,
                )
            reader, writer = await upgrade(request, version)
            try:
                async with spdy_connection(reader, writer) as connection:
                    await spdyexec.serve_session(
                        connection,
                        process,
                        options,
                        version or spdyexec.V1,
                        creation_timeout=self._config.stream_creation_timeout,
                        idle_timeout=self._config.streaming_idle_timeout,
                    )
            finally:
                await process.close()
                await writer.close()
            return writer.response

        return await self._limited(request, serve)

    def _opener(self, *, attach: bool) -> Callable[[StreamRequest], Awaitable[Process]]:
        if attach:
            if self._attacher is None:
                raise self._unsupported("attach")
            return self._attacher.attach
        if self._executor is None:
            raise self._unsupported("exec")
        return self._executor.exec

    def _handshake(self, request: web.Request) -> tuple[ChannelProtocol | None, str]:
        """The WebSocket subprotocol or the SPDY stream protocol version, refused with
        the kubelet's answers: 400 without an upgrade, 403 for no common protocol."""
        if _is_websocket(request):
            offered = offered_protocols(request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, ""))
            protocol = negotiate(offered, EXEC_PROTOCOLS)
            if protocol is None:
                raise web.HTTPBadRequest(
                    text=f"requested protocol(s) are not supported: {offered}; supports "
                    f"{[p.name for p in EXEC_PROTOCOLS]}"
                )
            return protocol, ""
        if not is_spdy_upgrade(request):
            raise web.HTTPBadRequest(text="Upgrade request required")
        return None, self._spdy_version(request, spdyexec.VERSIONS)

    @staticmethod
    def _spdy_version(request: web.Request, supported: tuple[str, ...]) -> str:
        offered = request.headers.getall("X-Stream-Protocol-Version", [])
        version = negotiate_version(offered, supported)
        if version is None:
            raise web.HTTPForbidden(
                text=f"unable to upgrade: unable to negotiate protocol: client supports "
                f"{offered}, server accepts {list(supported)}"
            )
        return version

    # ------------------------------------------------------------ port-forward

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        uid = self._pod_uid(request, container=None)
        forwarder = self._forwarder
        if forwarder is None:
            raise self._unsupported("port-forward")
        info = request.match_info
        describe = f"{info['pod']}, uid {uid}"

        async def open_tunnel(port: int) -> Tunnel:
            return await forwarder.forward(uid, port)

        if _is_websocket(request):
            offered = offered_protocols(request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, ""))
            if SPDY_TUNNEL in offered:
                return await self._limited(
                    request, lambda r: self._tunnelled(r, open_tunnel, describe)
                )
            protocol = negotiate(offered, FORWARD_PROTOCOLS)
            if protocol is None:
                raise web.HTTPBadRequest(text=f"requested protocol(s) are not supported: {offered}")
            try:
                ports = forwarded_ports(request.rel_url.query.getall("port", []))
            except BadStreamRequest as exc:
                raise web.HTTPBadRequest(text=str(exc)) from exc
            return await self._limited(
                request,
                lambda r: websocket.serve_forward(
                    r,
                    ports,
                    open_tunnel,
                    protocol,
                    offered=bool(offered),
                    describe=describe,
                    idle_timeout=self._config.streaming_idle_timeout,
                ),
            )
        if not is_spdy_upgrade(request):
            raise web.HTTPBadRequest(text="Upgrade request required")
        version = self._spdy_version(request, (spdyforward.VERSION,))

        async def serve(request: web.Request) -> web.StreamResponse:
            reader, writer = await upgrade(request, version or spdyforward.VERSION)
            try:
                await self._forward_over_spdy(reader, writer, open_tunnel, describe)
            finally:
                await writer.close()
            return writer.response

        return await self._limited(request, serve)

    async def _tunnelled(
        self, request: web.Request, open_tunnel: Callable[[int], Awaitable[Tunnel]], describe: str
    ) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=(SPDY_TUNNEL,), max_msg_size=websocket.MAX_MESSAGE)
        await ws.prepare(request)
        channel = WebSocketBytes(ws)
        try:
            await self._forward_over_spdy(channel, channel, open_tunnel, describe)
        finally:
            await ws.close()
        return ws

    async def _forward_over_spdy(
        self,
        reader: ByteReader,
        writer: ByteWriter,
        open_tunnel: Callable[[int], Awaitable[Tunnel]],
        describe: str,
    ) -> None:
        async with spdy_connection(reader, writer) as connection:
            await spdyforward.serve_forward(
                connection,
                open_tunnel,
                describe=describe,
                creation_timeout=self._config.stream_creation_timeout,
                idle_timeout=self._config.streaming_idle_timeout,
            )
