"""exec, attach and port-forward on the job backends: real Slurm 22.05 behind the
testbed's real sshd, the login user's rootless Podman (host network), and the HTCondor
stand-in's condor_ssh_to_job; first the transport underneath, over that sshd and
locally. The job's node is the login host here, so its process table is checked."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from vkpy.backend import PodSpec
from vkpy.backends.batch.jobbackend import JobBackend
from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.errors import ContainerNotRunning, PodNotFound, PortUnreachable, UnsupportedPodFeature
from vkpy.remote import Process, StreamRequest, TerminalSize
from vkpy.testing.htcondor_config import htcondor_on_testbed
from vkpy.testing.slurm_config import backend_on_testbed
from vkpy.testing.testbed import Endpoints
from vkpy.testing.waiting import eventually
from vkpy.transport import LocalRunner, SshRunner
from vkpy.transport.config import SshConfig

from .jobs import node_name, pod, processes_of, remote, running, shell, wait_for

MIB5 = 5 * 1024 * 1024
HTTP_PORT = 28931  # host network: a port of this machine


@pytest.fixture
async def slurm_node(login_user: Endpoints) -> AsyncIterator[SlurmBackend]:
    async with backend_on_testbed(
        login_user.ssh, login_user.slurm, node_name=node_name("streams")
    ) as started:
        yield started


@pytest.fixture
async def condor_node(login_user: Endpoints) -> AsyncIterator[HTCondorBackend]:
    async with htcondor_on_testbed(login_user.ssh, node_name=node_name("cstreams")) as started:
        yield started


@pytest.fixture
async def ssh_runner(login_user: Endpoints) -> AsyncIterator[SshRunner]:
    ssh = login_user.ssh
    runner = SshRunner(
        SshConfig(
            host=ssh.host,
            port=ssh.port,
            user=ssh.user,
            key_files=[ssh.client_key],
            known_hosts=ssh.known_hosts,
        )
    )
    yield runner
    await runner.close()


async def started(backend: JobBackend, script: str, **fields: object) -> PodSpec:
    spec = pod("streams", shell("main", script), **fields)
    await backend.create(spec)
    await wait_for(backend, spec.uid, running("main"), "the container to run")
    return spec


async def read_all(process: Process, stream: str = "stdout") -> bytes:
    return b"".join([chunk async for chunk in process.output(stream)])  # type: ignore[arg-type]


def session_processes(uid: str, marker: str) -> list[str]:
    """Processes of an exec session on this host: srun, podman's client, the command."""
    words = (marker, "podman exec", "podman attach", "srun", "condor_ssh_to_job")
    return [line for line in processes_of(uid, marker) if any(w in line for w in words)]


async def gone(uid: str, marker: str) -> None:
    await eventually(
        lambda: session_processes(uid, marker),
        what=f"every process of the session ({marker}) to be gone",
        timeout=5,
        until=lambda left: not left,
    )


async def http_get(backend: JobBackend, uid: str, port: int) -> bytes:
    """One HTTP/1.0 request through a port-forward; b"" while nothing listens yet."""
    try:
        tunnel = await backend.forward(uid, port)
    except PortUnreachable:
        return b""
    try:
        await tunnel.write(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        await tunnel.write_eof()
        got = b""
        while chunk := await tunnel.read(65536):
            got += chunk
        return got
    finally:
        await tunnel.close()


def request(spec: PodSpec, *command: str, **fields: bool) -> StreamRequest:
    return StreamRequest(uid=spec.uid, container="main", command=command, **fields)


# ---------------------------------------------------------------- the transport


@pytest.mark.parametrize("kind", ["ssh", "local"])
async def test_interactive_sessions_on_pipes_and_a_terminal(
    kind: str, ssh_runner: SshRunner
) -> None:
    runner = ssh_runner if kind == "ssh" else LocalRunner()
    session = await runner.start(["sh", "-c", "cat; echo err >&2; exit 3"], stdin=True)
    out = asyncio.ensure_future(read_all(session))  # type: ignore[arg-type]
    err = asyncio.ensure_future(read_all(session, "stderr"))  # type: ignore[arg-type]
    await session.write(b"line\x00\xff\n")
    await session.close_stdin()
    assert await session.wait() == 3
    assert (await out, await err) == (b"line\x00\xff\n", b"err\n")
    await session.close()

    tty = await runner.start(
        ["sh", "-c", "stty size; read x; stty size"], stdin=True, terminal=TerminalSize(80, 24)
    )
    text = asyncio.ensure_future(read_all(tty))  # type: ignore[arg-type]
    await asyncio.sleep(0.3)
    await tty.resize(TerminalSize(100, 30))
    await tty.write(b"\n")
    assert await tty.wait() == 0
    assert (await text).replace(b"\r", b"").split(b"\n")[::2][:2] == [b"24 80", b"30 100"]
    await tty.close()


async def test_a_closed_session_leaves_no_process(ssh_runner: SshRunner) -> None:
    session = await ssh_runner.start(["sh", "-c", "sleep 3211; echo never"], stdin=False)
    await asyncio.sleep(0.3)
    assert processes_of("no-uid", "sleep 3211")
    await session.close()
    await gone("no-uid", "sleep 3211")


@pytest.mark.parametrize("kind", ["ssh", "local"])
async def test_tcp_through_the_runner(
    kind: str, ssh_runner: SshRunner, login_user: Endpoints
) -> None:
    runner = ssh_runner if kind == "ssh" else LocalRunner()
    tunnel = await runner.open_tcp("127.0.0.1", login_user.ssh.port)  # the sshd itself
    assert (await tunnel.read(7)) == b"SSH-2.0"
    await tunnel.close()
    with pytest.raises(PortUnreachable):
        await runner.open_tcp("127.0.0.1", 1)


# ---------------------------------------------------------------- Slurm


async def test_exec_keeps_stdout_and_stderr_apart_and_gives_the_exit_code(
    slurm_node: SlurmBackend,
) -> None:
    spec = await started(slurm_node, "sleep 3200")
    process = await slurm_node.exec(
        request(spec, "sh", "-c", "echo out; echo 'e r r' >&2; exit 3", stdin=False)
    )
    out, err = await asyncio.gather(read_all(process), read_all(process, "stderr"))
    assert await process.wait() == 3
    assert (out, err) == (b"out\n", b"e r r\n")  # nothing of srun's own in stderr
    await process.close()


async def test_five_mib_of_binary_stdin_arrive_whole_and_eof_ends_them(
    slurm_node: SlurmBackend,
) -> None:
    spec = await started(slurm_node, "sleep 3200")
    data = os.urandom(MIB5)
    process = await slurm_node.exec(request(spec, "sha256sum", stdin=True))
    out = asyncio.ensure_future(read_all(process))
    for at in range(0, MIB5, 65536):
        await process.write(data[at : at + 65536])
    await process.close_stdin()
    assert await process.wait() == 0
    assert (await out).split()[0].decode() == hashlib.sha256(data).hexdigest()
    await process.close()


async def test_a_terminal_has_the_size_the_caller_sets(slurm_node: SlurmBackend) -> None:
    spec = await started(slurm_node, "sleep 3200")
    process = await slurm_node.exec(
        request(
            spec, "sh", "-c", "stty size; read x; stty size", stdin=True, tty=True, stderr=False
        )
    )
    text = asyncio.ensure_future(read_all(process))
    await process.resize(TerminalSize(91, 33))
    await asyncio.sleep(1.0)  # srun, then podman's client, pass the size on
    await process.resize(TerminalSize(120, 40))
    await asyncio.sleep(1.0)
    await process.write(b"\r")
    assert await process.wait() == 0
    sizes = [line.strip() for line in (await text).decode().splitlines() if line.strip()]
    assert sizes[-1] == "40 120", sizes
    await process.close()


async def test_closing_a_session_mid_way_leaves_nothing_running(
    slurm_node: SlurmBackend,
) -> None:
    spec = await started(slurm_node, "sleep 3200")
    process = await slurm_node.exec(request(spec, "sh", "-c", "sleep 3201; echo never", stdin=True))
    await eventually(
        lambda: session_processes(spec.uid, "sleep 3201"),
        what="the exec'd command to run",
        timeout=10,
        until=lambda found: any(line.endswith("sleep 3201") for line in found),
    )
    await process.close()
    await gone(spec.uid, "sleep 3201")
    assert processes_of("no-uid", "sleep 3200")  # the container itself runs on


async def test_port_forward_reaches_a_server_in_the_pod(slurm_node: SlurmBackend) -> None:
    spec = await started(
        slurm_node,
        f"mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && "
        f"exec httpd -f -p {HTTP_PORT} -h /tmp/www",
    )

    answer = await eventually(
        lambda: http_get(slurm_node, spec.uid, HTTP_PORT), what="httpd", timeout=10, until=bool
    )
    assert answer.startswith(b"HTTP/1.") and answer.endswith(b"hello-from-pod\n")
    with pytest.raises(PortUnreachable):
        await slurm_node.forward(spec.uid, HTTP_PORT + 1)


async def test_attach_follows_the_output_and_gives_the_containers_exit_code(
    slurm_node: SlurmBackend,
) -> None:
    spec = await started(
        slurm_node, "while [ ! -e /tmp/stop ]; do echo tick; echo tock >&2; sleep 0.3; done; exit 7"
    )
    attached = await slurm_node.attach(request(spec, stdin=False))
    out = attached.output("stdout")
    err = attached.output("stderr")
    assert (await anext(out)).startswith(b"tick")
    assert (await anext(err)).startswith(b"tock")
    stop = await slurm_node.exec(request(spec, "touch", "/tmp/stop"))
    assert await stop.wait() == 0
    await stop.close()
    assert await asyncio.wait_for(attached.wait(), 30) == 7
    await attached.close()


async def test_a_pending_pod_has_no_running_container(slurm_node: SlurmBackend) -> None:
    spec = pod(
        "pending",
        shell("main", "sleep 3202"),
        annotations={"slurm.vkpy.io/flags": "--begin=now+3600"},
    )
    await slurm_node.create(spec)
    with pytest.raises(ContainerNotRunning, match="is queued"):
        await slurm_node.exec(request(spec, "true"))
    with pytest.raises(ContainerNotRunning, match="is queued"):
        await slurm_node.forward(spec.uid, HTTP_PORT)
    with pytest.raises(PodNotFound):
        await slurm_node.exec(StreamRequest(uid=spec.uid, container="other", command=("true",)))
    with pytest.raises(PodNotFound):
        await slurm_node.exec(request(pod("none", shell("main", "true")), "true"))


async def test_a_pod_asking_for_a_terminal_is_refused_at_create(slurm_node: SlurmBackend) -> None:
    spec = pod("tty", shell("main", "sleep 3203", tty=True, stdin=True))
    with pytest.raises(UnsupportedPodFeature, match="stdin and tty"):
        await slurm_node.create(spec)
    assert not await slurm_node.list()


# ---------------------------------------------------------------- HTCondor stand-in


async def test_condor_exec_runs_in_the_jobs_sandbox(condor_node: HTCondorBackend) -> None:
    spec = await started(condor_node, "sleep 3204")
    job = (await condor_node.list())[spec.uid].job_id
    assert job
    sandbox = await remote(condor_node, ["condor_ssh_to_job", job, "pwd"])
    assert sandbox.strip() == condor_node.layout.pod(spec.uid)
    unknown = await condor_node.runner.run(["condor_ssh_to_job", "999999.0", "true"])
    assert unknown.status == 1 and b"is it still in the queue?" in unknown.stderr

    process = await condor_node.exec(
        request(spec, "sh", "-c", "cat; echo 'e;$(x)' >&2; exit 3", stdin=True)
    )
    out = asyncio.ensure_future(read_all(process))
    err = asyncio.ensure_future(read_all(process, "stderr"))
    await process.write(b"in'put\n")
    await process.close_stdin()
    assert await process.wait() == 3
    assert (await out, await err) == (b"in'put\n", b"e;$(x)\n")
    await process.close()

    sleeper = await condor_node.exec(request(spec, "sleep", "3205", stdin=True))
    await asyncio.sleep(1.0)
    assert processes_of(spec.uid, "sleep 3205")
    await sleeper.close()
    await gone(spec.uid, "sleep 3205")


async def test_condor_port_forward_and_pending(condor_node: HTCondorBackend) -> None:
    spec = await started(
        condor_node,
        f"mkdir -p /tmp/www && echo condor-pod > /tmp/www/index.html && "
        f"exec httpd -f -p {HTTP_PORT + 2} -h /tmp/www",
    )

    answer = await eventually(
        lambda: http_get(condor_node, spec.uid, HTTP_PORT + 2), what="httpd", timeout=10, until=bool
    )
    assert answer.endswith(b"condor-pod\n")
