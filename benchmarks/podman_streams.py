"""Exec and port-forward on the real Podman backend: what a session costs.

- exec round trip: ``backend.exec(["true"])`` to its exit code, and to ``close()``
  (which hands the ended session to Podman's cleanup), against ``podman exec CTR true``;
  medians of ROUNDS runs.
- port-forward throughput: 100 MiB through one `Tunnel` each way, to ``nc`` in the pod
  (loopback, through the pod's network namespace), and the download once more over a
  plain socket to the pod's IP: what ``nc`` itself can send.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from common import run  # benchmarks/common.py

from vkpy.backend import Container, PodSpec
from vkpy.backends.podman import PodmanBackend
from vkpy.config import PodmanConfig
from vkpy.errors import PortUnreachable
from vkpy.remote import StreamRequest, StreamTunnel, Tunnel
from vkpy.testing.testbed import Endpoints
from vkpy.testing.waiting import eventually

ROUNDS = int(os.environ.get("BENCH_STREAM_ROUNDS", "30"))
MIB = 1024 * 1024
SIZE = 100 * MIB
CHUNK = 256 * 1024
SCRIPT = (
    "while true; do nc -l -p 9000 > /dev/null; done & "
    "while true; do head -c {size} /dev/zero | nc -l -p 9001; done"
)


async def running(backend: PodmanBackend, uid: str) -> str:
    async def main_id() -> str:
        held = (await backend.driver.observe(uid)).get(uid)
        history = held.history("main") if held else None
        return history.current.id if history and history.current.running else ""

    return await eventually(main_id, what="the container to run")


async def exec_rounds(backend: PodmanBackend, uid: str) -> tuple[list[float], list[float]]:
    to_exit, to_closed = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        process = await backend.exec(StreamRequest(uid=uid, container="main", command=("true",)))
        async for _chunk in process.output("stdout"):
            pass
        if await process.wait() != 0:
            raise RuntimeError("exec true did not answer 0")
        to_exit.append(time.perf_counter() - start)
        await process.close()
        to_closed.append(time.perf_counter() - start)
    return to_exit, to_closed


def podman_rounds(endpoints: Endpoints, container: str) -> list[float]:
    env = {**os.environ, "CONTAINERS_CONF": str(endpoints.podman.containers_conf)}
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        subprocess.run(["podman", "exec", container, "true"], env=env, check=True)
        times.append(time.perf_counter() - start)
    return times


async def connect(backend: PodmanBackend, uid: str, port: int) -> Tunnel:
    for _ in range(100):  # nc listens again a moment after each connection
        try:
            return await backend.forward(uid, port)
        except PortUnreachable:
            await asyncio.sleep(0.05)
    raise PortUnreachable(f"nothing listens on port {port} of the pod")


async def upload(backend: PodmanBackend, uid: str) -> float:
    tunnel = await connect(backend, uid, 9000)
    block = b"\0" * CHUNK
    start = time.perf_counter()
    for _ in range(SIZE // CHUNK):
        await tunnel.write(block)
    await tunnel.write_eof()
    while await tunnel.read(CHUNK):  # nc ends on our EOF: everything was taken
        pass
    elapsed = time.perf_counter() - start
    await tunnel.close()
    return SIZE / MIB / elapsed


async def download(backend: PodmanBackend, uid: str, *, direct: bool = False) -> float:
    """From nc in the pod; ``direct``: a plain socket to the pod's IP, for comparison."""
    if direct:
        await connect(backend, uid, 9000)  # wait until the pod listens
        address = backend.driver.pod_ips[uid] or ""
        tunnel: Tunnel = StreamTunnel(*await asyncio.open_connection(address, 9001))
    else:
        tunnel = await connect(backend, uid, 9001)
    received = 0
    start = time.perf_counter()
    while chunk := await tunnel.read(CHUNK):
        received += len(chunk)
    elapsed = time.perf_counter() - start
    await tunnel.close()
    if received != SIZE:
        raise RuntimeError(f"received {received} bytes of {SIZE}")
    return SIZE / MIB / elapsed


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


async def bench(endpoints: Endpoints, work: Path) -> dict[str, Any]:
    config = PodmanConfig(
        socket=str(endpoints.podman.socket), state_dir=work / "state", memory_dir=work / "memory"
    )
    backend = PodmanBackend(config, node_name=f"bench-streams-{uuid.uuid4().hex[:6]}")
    await backend.start()
    script = SCRIPT.format(size=SIZE)
    main = Container(name="main", image=endpoints.podman.image, command=("sh", "-c", script))
    pod = PodSpec(
        uid=str(uuid.uuid4()),
        namespace="bench",
        name="streams",
        containers=(main,),
        termination_grace_period_seconds=1,
    )
    try:
        await backend.create(pod)
        container = await running(backend, pod.uid)
        to_exit, to_closed = await exec_rounds(backend, pod.uid)
        cli = await asyncio.to_thread(podman_rounds, endpoints, container)
        return {
            "exec_rounds": ROUNDS,
            "exec_to_exit_code_p50_ms": median_ms(to_exit),
            "exec_to_closed_p50_ms": median_ms(to_closed),
            "podman_exec_true_p50_ms": median_ms(cli),
            "tunnel_upload_100MiB_MiB_per_s": round(await upload(backend, pod.uid), 1),
            "tunnel_download_100MiB_MiB_per_s": round(await download(backend, pod.uid), 1),
            "direct_download_100MiB_MiB_per_s": round(
                await download(backend, pod.uid, direct=True), 1
            ),
        }
    finally:
        await backend.delete(pod.uid, grace_seconds=0)
        await backend.close()


if __name__ == "__main__":
    run("podman-streams", bench)
