"""``kubectl port-forward`` on Podman: a TCP connection to a port of the pod.

As container runtimes do for the kubelet, the connection goes to 127.0.0.1 inside the
pod's network namespace, so a server listening on the pod's loopback only is reached
too, and a pod with network "none" as well. A short-lived thread of its own enters
the namespace of the pod's infra container (``setns`` moves only the calling thread),
connects, and goes back; the socket stays in the pod's namespace and is then used
from the event loop like any other. Entering takes CAP_SYS_ADMIN; without it (not
root, or setns refused) a bridge pod is dialled at its IP instead, and a "none" pod
cannot be reached. A pod on the host network is dialled on the host's loopback.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vkpy.backends.podman import observed
from vkpy.errors import BackendError, PortUnreachable, StreamingUnsupported
from vkpy.jsontypes import JSON
from vkpy.remote import StreamTunnel

CLONE_NEWNET = 0x40000000
LOOPBACK = "127.0.0.1"
UNREACHABLE = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}


@dataclass(frozen=True)
class Dial:
    host: str
    netns: str | None = None  # a /proc/PID/ns/net path to connect from


def plan(infra: JSON, *, can_enter: bool, where: str) -> Dial:
    """Where to connect for a pod, from its infra container's inspect."""
    mode = str((infra.get("HostConfig") or {}).get("NetworkMode") or "")
    if mode == "host":
        return Dial(LOOPBACK)
    pid = int((infra.get("State") or {}).get("Pid") or 0)
    if can_enter and pid > 0:
        return Dial(LOOPBACK, netns=f"/proc/{pid}/ns/net")
    address = observed.ip_address(infra)
    if address:
        return Dial(address)
    raise StreamingUnsupported(
        f"pod {where} has no address the agent can reach (network {mode or 'none'}), and "
        "entering its network namespace takes CAP_SYS_ADMIN"
    )


def can_enter() -> bool:
    return os.geteuid() == 0


class _CannotEnter(Exception):
    """setns refused (no CAP_SYS_ADMIN after all): dial from outside instead."""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _enter(netns: str) -> None:
    try:
        target = os.open(netns, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
    except PermissionError as exc:
        raise _CannotEnter(str(exc)) from exc


def _connect(dial: Dial, port: int, timeout: float) -> socket.socket:
    """Connect; from inside ``dial.netns`` when set (call in a thread of its own)."""
    if dial.netns is None:
        return socket.create_connection((dial.host, port), timeout)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _enter(dial.netns)
        try:
            return socket.create_connection((dial.host, port), timeout)
        finally:
            _setns(home)  # should this fail, the thread ends with its executor anyway
    finally:
        os.close(home)


async def reach(infra: JSON, port: int, *, timeout: float, where: str) -> StreamTunnel:
    """Connect to ``port`` of the pod whose infra container's inspect is ``infra``."""
    dial = plan(infra, can_enter=can_enter(), where=where)
    try:
        return await connect(dial, port, timeout=timeout, where=where)
    except _CannotEnter:
        dial = plan(infra, can_enter=False, where=where)
        return await connect(dial, port, timeout=timeout, where=where)


async def connect(dial: Dial, port: int, *, timeout: float, where: str) -> StreamTunnel:
    # One thread per connection, gone afterwards: never a pooled thread left in a pod's
    # namespace if going back failed.
    executor = ThreadPoolExecutor(1, thread_name_prefix="vkpy-netns")
    try:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(executor, _connect, dial, port, timeout)
    except TimeoutError as exc:
        raise PortUnreachable(f"pod {where}: port {port}: no answer in {timeout:g}s") from exc
    except OSError as exc:
        if exc.errno in UNREACHABLE:
            raise PortUnreachable(f"pod {where}: port {port}: {exc.strerror}") from exc
        raise BackendError(f"pod {where}: cannot connect to port {port}: {exc}") from exc
    finally:
        executor.shutdown(wait=False)
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    return StreamTunnel(reader, writer)
