"""What the Podman backend's exec and port-forward decide without Podman: which
container, which host processes, where to dial."""

import asyncio
import socket

import pytest

from vkpy.backend import Container, PodSpec
from vkpy.backends.podman import forward, observed, procs, spec, target
from vkpy.errors import ContainerNotRunning, PodNotFound, PortUnreachable, StreamingUnsupported

from .test_podman_observed import inst

# ------------------------------------------------------------------ which container


def test_the_running_instance_of_a_container_is_found():
    pods = observed.group(
        [inst("", state="running"), inst(state="exited"), inst(state="running", restarts=1)]
    )
    assert target.running(pods, "uid-1", "main").id == "main-1"  # the latest run
    assert target.sandbox(pods, "uid-1").id == "-0"  # the infra container


def test_missing_and_stopped_containers_are_told_apart():
    pods = observed.group([inst("", state="exited"), inst(state="exited")])
    with pytest.raises(PodNotFound, match="no pod with uid u2"):
        target.running(pods, "u2", "main")
    with pytest.raises(PodNotFound, match="no container 'side'"):
        target.running(pods, "uid-1", "side")
    with pytest.raises(ContainerNotRunning, match="main of pod ns/web is not running"):
        target.running(pods, "uid-1", "main")
    with pytest.raises(PortUnreachable, match="no running sandbox"):
        target.sandbox(pods, "uid-1")


def test_containers_get_stdin_and_a_terminal_from_the_spec():
    pod = PodSpec(uid="uid-1", namespace="ns", name="web", containers=())

    def body(container: Container) -> dict[str, object]:
        return spec.container_body(
            pod, container, node="n", init=False, index=0, volumes={}, deadline=None
        )

    plain = body(Container("main", "busybox"))
    interactive = body(Container("main", "busybox", stdin=True, stdin_once=True, tty=True))
    assert (plain["stdin"], plain["terminal"]) == (False, False)
    assert (interactive["stdin"], interactive["terminal"]) == (True, True)


# ------------------------------------------------------------------ host processes


def test_the_parent_is_read_past_any_command_name():
    assert procs._parent("42 (a) b (c)) S 7 42 42 0 -1") == 7


def table(**rows: tuple[int, str]) -> dict[int, procs.Proc]:
    return {
        int(pid[1:]): procs.Proc(ppid, tuple(argv.split())) for pid, (ppid, argv) in rows.items()
    }


def test_a_process_tree_is_listed_parents_first():
    processes = table(
        p10=(1, "sh -c x"),
        p11=(10, "sleep 1"),
        p12=(10, "sh"),
        p13=(12, "sleep 2"),
        p20=(1, "other"),
    )
    assert procs.tree(10, processes) == [10, 11, 12, 13]
    assert procs.tree(99, processes) == []


def test_only_the_sessions_exit_delay_sleeper_is_picked():
    conmon = "/usr/bin/conmon --api-version 1 -c CTR -u {} --exec --exit-delay 300"
    processes = table(
        p100=(1, conmon.format("S1")),
        p101=(100, conmon.format("S1")),  # the sleeper: a conmon of S1 under one
        p200=(1, conmon.format("S2")),
        p201=(200, conmon.format("S2")),
        p300=(1, "/usr/bin/conmon -c CTR -u S1"),  # not an exec conmon
        p301=(300, "sleep S1 --exec"),  # not conmon at all
    )
    assert procs.exit_delay_sleepers("S1", processes) == [101]


def test_the_process_table_is_read_from_proc(tmp_path):
    for pid, stat, cmdline in (
        ("7", "7 (co nmon) S 1 7", b"/usr/bin/conmon\0-u\0S1\0"),
        ("8", "8 (x) S 7 8", b""),
    ):
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "stat").write_text(stat)
        (tmp_path / pid / "cmdline").write_bytes(cmdline)
    (tmp_path / "9").mkdir()  # vanished while read
    (tmp_path / "self").mkdir()
    assert procs.table(tmp_path) == {
        7: procs.Proc(1, ("/usr/bin/conmon", "-u", "S1")),
        8: procs.Proc(7, ()),
    }


# ------------------------------------------------------------------ where to dial


def infra(mode: str, pid: int = 123, ip: str = "") -> dict[str, object]:
    networks = {"podman": {"IPAddress": ip}} if ip else {}
    return {
        "HostConfig": {"NetworkMode": mode},
        "State": {"Pid": pid},
        "NetworkSettings": {"Networks": networks},
    }


def test_the_pods_loopback_is_dialled_from_inside_its_namespace():
    assert forward.plan(infra("host"), can_enter=True, where="p") == forward.Dial("127.0.0.1")
    assert forward.plan(infra("bridge", ip="10.88.0.5"), can_enter=True, where="p") == (
        forward.Dial("127.0.0.1", netns="/proc/123/ns/net")
    )
    assert forward.plan(infra("none"), can_enter=True, where="p").netns == "/proc/123/ns/net"


def test_without_entering_a_bridge_pod_is_dialled_at_its_ip():
    assert forward.plan(infra("bridge", ip="10.88.0.5"), can_enter=False, where="p") == (
        forward.Dial("10.88.0.5")
    )
    with pytest.raises(StreamingUnsupported, match="CAP_SYS_ADMIN"):
        forward.plan(infra("none"), can_enter=False, where="ns/web")
    with pytest.raises(StreamingUnsupported):
        forward.plan(infra("bridge", pid=0), can_enter=True, where="p")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_closed_port_is_unreachable():
    port = free_port()
    with pytest.raises(PortUnreachable, match=f"port {port}"):
        await forward.connect(forward.Dial("127.0.0.1"), port, timeout=1, where="ns/web")


async def test_a_tunnel_carries_bytes_both_ways_and_the_half_close():
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.read()).upper())  # until our half-close
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        tunnel = await forward.connect(forward.Dial("127.0.0.1"), port, timeout=1, where="p")
        await tunnel.write(b"hello")
        await tunnel.write_eof()
        answer = b""
        while chunk := await tunnel.read(100):
            answer += chunk
        await tunnel.close()
        await tunnel.close()
    assert answer == b"HELLO"


async def test_a_refused_setns_falls_back_to_the_pods_ip(monkeypatch):
    def refuse(fd: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        writer.close()

    monkeypatch.setattr(forward, "can_enter", lambda: True)
    monkeypatch.setattr(forward, "_setns", refuse)
    server = await asyncio.start_server(hello, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pod = infra("bridge", pid=1, ip="127.0.0.1")
    async with server:
        tunnel = await forward.reach(pod, port, timeout=1, where="p")
        assert await tunnel.read(10) == b"hi"
        await tunnel.close()
