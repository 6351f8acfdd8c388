"""The API client's translation layer, against a small aiohttp server on a unix socket."""

import asyncio
import json
import struct
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from vkpy.backends.podman.api import FrameDecoder, PodmanApi, socket_path
from vkpy.errors import BackendError, BackendUnavailable, ImagePullError, PodNotFound

BASE = "/v4.0.0/libpod"


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_frames_are_decoded_whatever_the_chunking():
    data = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"") + frame(1, b"x" * 300)
    for size in (1, 3, 8, 9, len(data)):
        decoder = FrameDecoder()
        frames = []
        for start in range(0, len(data), size):
            frames += decoder.feed(data[start : start + size])
        assert frames == [(1, b"out\n"), (2, b"err\n"), (1, b""), (1, b"x" * 300)]
        assert decoder.pending == 0


def test_an_incomplete_frame_waits_for_the_rest():
    decoder = FrameDecoder()
    assert decoder.feed(frame(1, b"hello")[:10]) == []
    assert decoder.pending == 10


def test_socket_urls_and_paths():
    assert socket_path("unix:///run/podman.sock") == "/run/podman.sock"
    assert socket_path("/run/podman.sock") == "/run/podman.sock"


async def logs_handler(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    data = frame(1, b"line 1\n") + frame(0, b"stdin?") + frame(2, b"line 2\n")
    for start in range(0, len(data), 5):  # chunks that cut through headers
        await response.write(data[start : start + 5])
        await asyncio.sleep(0)
    await response.write_eof()
    return response


async def events_handler(request: web.Request) -> web.StreamResponse:
    filters = json.loads(request.query["filters"])
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(json.dumps({"Action": "start", "filters": filters}).encode() + b"\n")
    await response.write(b"not json\n\n")
    await response.write(json.dumps({"Action": "died"}).encode() + b"\n")
    await response.write_eof()
    return response


async def pull_handler(request: web.Request) -> web.Response:
    reference = request.query["reference"]
    if reference == "bad/ref":
        return web.json_response({"message": "invalid reference"}, status=400)
    if reference == "missing/image:1":
        lines = [{"stream": "Trying to pull...\n"}, {"error": "connection refused"}]
    else:
        lines = [{"images": ["abc"], "id": "abc"}]
    return web.Response(text="".join(json.dumps(line) + "\n" for line in lines))


async def slow_handler(request: web.Request) -> web.Response:
    await asyncio.sleep(1)  # past the client's 0.5 s timeout
    return web.Response(text="late")


def answer(payload: dict[str, str], status: int):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(payload, status=status)

    return handler


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[PodmanApi]:
    app = web.Application()
    app.router.add_get(f"{BASE}/_ping", answer({}, 200))
    app.router.add_get(
        f"{BASE}/containers/gone/json",
        answer({"cause": "no such container", "message": "no ctr"}, 404),
    )
    app.router.add_post(
        f"{BASE}/containers/create", answer({"message": "statfs /x: no such file"}, 500)
    )
    app.router.add_get(  # removed between libpod's lookup and its read
        f"{BASE}/containers/racing/json",
        answer({"message": "container 9d28 does not exist in database: no such container"}, 500),
    )
    app.router.add_get(f"{BASE}/containers/slow/json", slow_handler)
    app.router.add_get(f"{BASE}/containers/c1/logs", logs_handler)
    app.router.add_get(f"{BASE}/events", events_handler)
    app.router.add_post(f"{BASE}/images/pull", pull_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    socket = tmp_path / "podman.sock"
    await web.UnixSite(runner, str(socket)).start()
    client = PodmanApi(f"unix://{socket}", timeout=0.5)
    await client.open()
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


async def test_calls_are_counted_per_operation(api):
    await api.ping()
    await api.ping()
    assert api.calls["ping"] == 2


async def test_http_errors_are_translated(api):
    with pytest.raises(PodNotFound, match="no ctr"):
        await api.inspect_container("gone")
    with pytest.raises(BackendError, match="HTTP 500: statfs /x") as caught:
        await api.create_container({"name": "x"})
    assert not isinstance(caught.value, BackendUnavailable | PodNotFound)
    with pytest.raises(PodNotFound, match="does not exist in database"):
        await api.inspect_container("racing")


async def test_a_slow_answer_is_unavailable(api):
    with pytest.raises(BackendUnavailable, match=r"container\.inspect: TimeoutError"):
        await api.inspect_container("slow")  # a timeout's own message is empty


async def test_no_service_is_unavailable(tmp_path):
    client = PodmanApi(str(tmp_path / "nothing.sock"))
    await client.open()
    try:
        with pytest.raises(BackendUnavailable, match="ping"):
            await client.ping()
    finally:
        await client.close()


async def test_a_failed_pull_names_the_container(api):
    with pytest.raises(ImagePullError, match="connection refused") as caught:
        await api.pull("missing/image:1", policy="always", container="web")
    assert caught.value.container == "web"
    with pytest.raises(ImagePullError, match="invalid reference"):
        await api.pull("bad/ref", policy="missing", container="web")
    await api.pull("good/image:1", policy="missing", container="web")


async def test_logs_are_demultiplexed(api):
    chunks = [chunk async for chunk in api.logs("c1", follow=True)]
    assert b"".join(chunks) == b"line 1\nline 2\n"


async def test_events_stream_as_json_with_the_label_filter(api):
    async with api.events(labels={"vkpy.io/node": "n1"}, actions=("start", "died")) as stream:
        events = [event async for event in stream]
    assert [e["Action"] for e in events] == ["start", "died"]
    assert events[0]["filters"] == {
        "label": ["vkpy.io/node=n1"],
        "type": ["container"],
        "event": ["start", "died"],
    }
