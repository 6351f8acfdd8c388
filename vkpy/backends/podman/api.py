"""A thin async client for Podman's libpod REST API over its unix socket.

Errors are translated here, once: the socket unreachable or a call timing out is
`BackendUnavailable`, an HTTP 404 is `PodNotFound` (and so is the 500 libpod answers
for a container or pod removed while it was being read), any other failure `BackendError`
with Podman's own message; a failed pull is `ImagePullError`. Every call is counted
per operation in `PodmanApi.calls`.

Container logs come multiplexed: each frame is an 8-byte header (stream number, three
zero bytes, big-endian payload length) and the payload; `FrameDecoder` undoes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from vkpy.errors import BackendError, BackendUnavailable, ImagePullError, PodNotFound
from vkpy.jsontypes import JSON

logger = logging.getLogger(__name__)

API_VERSION = "v4.0.0"
STDOUT, STDERR = 1, 2
HEADER = struct.Struct(">BxxxL")


def socket_path(socket: str) -> str:
    """A path from ``/run/podman.sock`` or ``unix:///run/podman.sock``."""
    return socket.removeprefix("unix://")


class FrameDecoder:
    """Incremental decoder of Podman's multiplexed log stream: bytes in, payloads out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The complete frames in what has arrived so far, as (stream, payload)."""
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= HEADER.size:
            stream, length = HEADER.unpack_from(self._buffer)
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append((stream, bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still waiting for the rest."""
        return len(self._buffer)


def gone(message: str) -> bool:
    """Whether libpod's message says the container or pod no longer exists: it answers
    500, not 404, when one is removed between its lookup and its read."""
    return message.endswith(("no such container", "no such pod"))


def message_of(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:500]
    if isinstance(decoded, dict):
        return str(decoded.get("message") or decoded.get("cause") or decoded)[:500]
    return str(decoded)[:500]


def _labels(labels: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in sorted(labels.items())]


class PodmanApi:
    """One connection pool to one Podman service."""

    def __init__(self, socket: str, *, timeout: float = 30.0, pull_timeout: float = 600.0) -> None:
        self.socket = socket_path(socket)
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        self.calls: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None
        self._base = f"http://podman/{API_VERSION}/libpod"

    async def open(self) -> None:
        if self._session is None:
            # no pool limit: the event stream and every followed log hold a connection
            connector = aiohttp.UnixConnector(path=self.socket, limit=0)
            self._session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BackendUnavailable("the Podman API client is not open")
        return self._session

    async def _call(
        self,
        op: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: JSON | None = None,
        timeout: float | None = None,
        unlimited: bool = False,
    ) -> bytes:
        self.calls[op] += 1
        total = None if unlimited else timeout or self.timeout
        limit = aiohttp.ClientTimeout(total=total, sock_connect=self.timeout)
        try:
            async with self.session.request(
                method, self._base + path, params=params, json=body, timeout=limit
            ) as response:
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"podman {op}: {str(exc) or type(exc).__name__}") from exc
        if status == 404 or (status == 500 and gone(message_of(data))):
            raise PodNotFound(f"podman {op}: {message_of(data)}")
        if status >= 400:
            raise BackendError(f"podman {op}: HTTP {status}: {message_of(data)}")
        return data

    async def _json(self, op: str, method: str, path: str, **kwargs: Any) -> Any:
        data = await self._call(op, method, path, **kwargs)
        try:
            return json.loads(data) if data else None
        except ValueError as exc:
            raise BackendError(f"podman {op}: the answer is not JSON") from exc

    # ------------------------------------------------------------ system

    async def ping(self) -> None:
        await self._call("ping", "GET", "/_ping")

    # ------------------------------------------------------------ containers

    async def list_containers(self, labels: Mapping[str, str]) -> list[JSON]:
        """Every container (running or not) carrying all of ``labels``, in one call."""
        params = {"all": "true", "filters": json.dumps({"label": _labels(labels)})}
        found = await self._json("container.list", "GET", "/containers/json", params=params)
        return list(found or [])

    async def inspect_container(self, container: str) -> JSON:
        found = await self._json("container.inspect", "GET", f"/containers/{container}/json")
        return dict(found or {})

    async def create_container(self, body: JSON) -> str:
        created = await self._json("container.create", "POST", "/containers/create", body=body)
        return str(created["Id"])

    async def start_container(self, container: str) -> None:
        await self._call("container.start", "POST", f"/containers/{container}/start")

    async def remove_container(self, container: str) -> None:
        params = {"force": "true", "v": "true"}
        await self._call("container.remove", "DELETE", f"/containers/{container}", params=params)

    async def resize_container(self, container: str, *, height: int, width: int) -> None:
        """The terminal size of a container made with one (attach)."""
        params = {"h": str(height), "w": str(width)}
        await self._call(
            "container.resize", "POST", f"/containers/{container}/resize", params=params
        )

    async def wait_container(self, container: str) -> int:
        """Until the container stops (no time-out); its exit code."""
        code = await self._json(
            "container.wait", "POST", f"/containers/{container}/wait", unlimited=True
        )
        return int(code)

    # ------------------------------------------------------------ exec sessions

    async def create_exec(self, container: str, body: JSON) -> str:
        created = await self._json(
            "exec.create", "POST", f"/containers/{container}/exec", body=body
        )
        return str(created["Id"])

    async def inspect_exec(self, session: str) -> JSON:
        found = await self._json("exec.inspect", "GET", f"/exec/{session}/json")
        return dict(found or {})

    async def resize_exec(self, session: str, *, height: int, width: int) -> None:
        params = {"h": str(height), "w": str(width)}
        await self._call("exec.resize", "POST", f"/exec/{session}/resize", params=params)

    # ------------------------------------------------------------ pods

    async def create_pod(self, body: JSON) -> str:
        created = await self._json("pod.create", "POST", "/pods/create", body=body)
        return str(created["Id"])

    async def start_pod(self, pod: str) -> None:
        """Start what the pod holds: right after create, its infra container alone."""
        await self._call("pod.start", "POST", f"/pods/{pod}/start")

    async def infra_container(self, pod: str) -> str:
        inspect = await self._json("pod.inspect", "GET", f"/pods/{pod}/json")
        return str(inspect.get("InfraContainerID") or "")

    async def stop_pod(self, pod: str, *, grace_seconds: int) -> None:
        """Stop every container: SIGTERM, then SIGKILL after ``grace_seconds``."""
        await self._call(
            "pod.stop",
            "POST",
            f"/pods/{pod}/stop",
            params={"t": str(grace_seconds)},
            timeout=self.timeout + grace_seconds,
        )

    async def list_pods(self, labels: Mapping[str, str]) -> list[str]:
        """The names of the Podman pods carrying all of ``labels``, with containers or not."""
        params = {"filters": json.dumps({"label": _labels(labels)})}
        found = await self._json("pod.list", "GET", "/pods/json", params=params)
        return [str(pod["Name"]) for pod in found or [] if pod.get("Name")]

    async def remove_pod(self, pod: str) -> None:
        """Remove the pod and its containers (killing what still runs)."""
        await self._call("pod.remove", "DELETE", f"/pods/{pod}", params={"force": "true"})

    # ------------------------------------------------------------ images

    async def image_exists(self, reference: str) -> bool:
        try:
            await self._call(
                "image.exists", "GET", f"/images/{quote(reference, safe='/:@')}/exists"
            )
        except PodNotFound:
            return False
        return True

    async def pull(self, reference: str, *, policy: str, container: str) -> None:
        """Pull ``reference`` (policy ``always`` or ``missing``); raises ImagePullError."""
        op = "image.pull"
        self.calls[op] += 1
        params = {"reference": reference, "policy": policy, "quiet": "true"}
        limit = aiohttp.ClientTimeout(total=self.pull_timeout)
        try:
            async with self.session.post(
                self._base + "/images/pull", params=params, timeout=limit
            ) as response:
                data = await response.read()
                status = response.status
        except TimeoutError as exc:
            raise ImagePullError(
                f"pulling {reference} took longer than {self.pull_timeout:g}s", container=container
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable(f"podman {op}: {str(exc) or type(exc).__name__}") from exc
        if status >= 400:
            raise ImagePullError(f"pulling {reference}: {message_of(data)}", container=container)
        for line in data.splitlines():
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if isinstance(report, dict) and report.get("error"):
                raise ImagePullError(f"pulling {reference}: {report['error']}", container=container)

    # ------------------------------------------------------------ streams

    @asynccontextmanager
    async def events(
        self, *, labels: Mapping[str, str], actions: tuple[str, ...]
    ) -> AsyncIterator[AsyncIterator[JSON]]:
        """The container event stream for ``labels``, open once the context is entered."""
        op = "events"
        self.calls[op] += 1
        filters = {"label": _labels(labels), "type": ["container"], "event": list(actions)}
        params = {"stream": "true", "filters": json.dumps(filters)}
        limit = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_connect=self.timeout)
        try:
            async with self.session.get(
                self._base + "/events", params=params, timeout=limit
            ) as response:
                if response.status >= 400:
                    data = await response.read()
                    raise BackendError(f"podman {op}: HTTP {response.status}: {message_of(data)}")
                yield self._event_lines(response)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"podman {op}: {str(exc) or type(exc).__name__}") from exc

    @staticmethod
    async def _event_lines(response: aiohttp.ClientResponse) -> AsyncIterator[JSON]:
        async for line in response.content:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                logger.warning("podman sent an event that is not JSON: %r", line[:200])
                continue
            if isinstance(event, dict):
                yield event

    async def logs(self, container: str, **options: Any) -> AsyncIterator[bytes]:
        """The container's stdout and stderr as they come, demultiplexed (the options of
        `log_frames`)."""
        async for frames in self.log_frames(container, **options):
            payload = b"".join(data for stream, data in frames if stream in (STDOUT, STDERR))
            if payload:
                yield payload

    async def log_frames(
        self,
        container: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        """The log's frames (stream number, payload), as many as each read brought."""
        op = "container.logs"
        self.calls[op] += 1
        params = {
            "stdout": "true",
            "stderr": "true",
            "follow": "true" if follow else "false",
            "timestamps": "true" if timestamps else "false",
        }
        if tail is not None:
            params["tail"] = str(max(tail, 0))
        if since is not None:
            params["since"] = since.astimezone(UTC).isoformat()
        limit = aiohttp.ClientTimeout(
            total=None if follow else self.timeout, sock_connect=self.timeout
        )
        decoder = FrameDecoder()
        try:
            async with self.session.get(
                self._base + f"/containers/{container}/logs", params=params, timeout=limit
            ) as response:
                if response.status == 404:
                    raise PodNotFound(f"podman {op}: {message_of(await response.read())}")
                if response.status >= 400:
                    data = await response.read()
                    raise BackendError(f"podman {op}: HTTP {response.status}: {message_of(data)}")
                async for chunk in response.content.iter_any():
                    if frames := decoder.feed(chunk):
                        yield frames
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"podman {op}: {str(exc) or type(exc).__name__}") from exc
        if decoder.pending:
            logger.debug(
                "log stream of %s ended inside a frame (%d bytes)", container, decoder.pending
            )


async def wait_until_ready(api: PodmanApi, *, timeout: float) -> None:
    """Ping until the service answers; raises BackendUnavailable after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await api.ping()
        except BackendUnavailable:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            return
