"""SlurmBackend against real Slurm 22.05 behind the testbed's real sshd, as its
unprivileged login user; containers run under the user's rootless Podman."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vkpy.backend import (
    EnvVar,
    File,
    LogOptions,
    Mount,
    PodRun,
    PodSpec,
    Volume,
    Waiting,
)
from vkpy.backends.slurm import queue
from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.errors import BackendUnavailable
from vkpy.testing.processes import port_open
from vkpy.testing.slurm_config import backend_on_testbed
from vkpy.testing.sshd import session_pids
from vkpy.testing.testbed import Endpoints
from vkpy.transport import SshRunner

from .jobs import (
    assert_nothing_left,
    ended,
    logs,
    node_name,
    pod,
    remote,
    running,
    shell,
    states,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
PODS_AT_ONCE = int(os.environ.get("VKPY_SLURM_PODS", "100"))


@pytest.fixture
async def backend(login_user: Endpoints) -> AsyncIterator[SlurmBackend]:
    async with backend_on_testbed(
        login_user.ssh, login_user.slurm, node_name=node_name("slurm")
    ) as started:
        yield started


@pytest.fixture(scope="module", autouse=True)
async def time_limited(login_user: Endpoints) -> AsyncIterator[tuple[SlurmBackend, PodSpec]]:
    """A pod under Slurm's own one-minute time limit, submitted when the module starts
    so that the minute passes while the other tests run (the last test checks it)."""
    spec = pod(
        "timelimit",
        shell("main", "sleep 3104"),
        annotations={"slurm.vkpy.io/flags": "--time=1"},
    )
    async with backend_on_testbed(
        login_user.ssh, login_user.slurm, node_name=node_name("slurm-timelimit")
    ) as started:
        await started.create(spec)
        yield started, spec


# ---------------------------------------------------------------- a pod's life


async def test_pod_with_init_container_files_secret_and_env(backend: SlurmBackend) -> None:
    config = Volume("config", "files", files=(File("app.conf", b"mode = 'fast'\n"),))
    secret = Volume(
        "token", "files", files=(File("token", b"s3cr3t-token\n", mode=0o440),), sensitive=True
    )
    work = Volume("work", "emptyDir")
    spec = pod(
        "full",
        shell(
            "reader",
            'cat /etc/app/app.conf /var/run/token/token /work/from-init; echo "GREETING=$GREETING"',
            env=(EnvVar("GREETING", "hello 'world' $(id)"),),
            mounts=(
                Mount("config", "/etc/app"),
                Mount("token", "/var/run/token"),
                Mount("work", "/work"),
            ),
        ),
        shell("failer", "sleep 1; exit 3"),
        init_containers=(
            shell("setup", "echo prepared > /work/from-init", mounts=(Mount("work", "/work"),)),
        ),
        volumes=(config, secret, work),
    )
    await backend.create(spec)
    job_id = (
        await wait_for(backend, spec.uid, lambda r: r is not None and bool(r.job_id), "a job")
    ).job_id
    # What Slurm keeps of the job (its copy of the script) holds no pod values.
    script = await remote(backend, ["scontrol", "write", "batch_script", job_id, "-"])
    assert "#!/bin/bash" in script
    for value in ("s3cr3t", "hello 'world'", "app.conf"):
        assert value not in script
    directory = backend.layout.pod(spec.uid)
    modes = await remote(
        backend,
        [
            "stat",
            "-c",
            "%a %n",
            directory,
            f"{directory}/volumes/token/token",
            f"{directory}/spec/reader.env",
        ],
    )
    # The secret's mode is the pod's; the pod's directory keeps others out.
    assert [line.split()[0] for line in modes.splitlines()] == ["700", "440", "600"]

    run = await wait_for(backend, spec.uid, ended, "the pod to end")
    assert run is not None
    found = states(run)
    assert found["setup"].exit_code == 0 and found["setup"].reason == "Completed"
    assert found["reader"].exit_code == 0
    assert (found["failer"].exit_code, found["failer"].reason) == (3, "Error")
    assert found["reader"].started_at >= found["setup"].finished_at
    assert (run.namespace, run.name, run.job_id) == ("slurm-tests", "full", job_id)
    assert await logs(backend, spec.uid, "reader") == (
        b"mode = 'fast'\ns3cr3t-token\nprepared\nGREETING=hello 'world' $(id)\n"
    )
    # The job exits with the worst exit code: Slurm records it as failed with code 3.
    acct = await remote(backend, queue.sacct_argv([job_id], jobcomp=True))
    record = queue.parse_sacct(acct)[job_id]
    assert (record.state.value, record.exit_code) == ("FAILED", 3)


async def test_create_twice_submits_once(backend: SlurmBackend) -> None:
    spec = pod("twice", shell("main", "sleep 2"))
    await asyncio.gather(backend.create(spec), backend.create(spec), backend.create(spec))
    await backend.create(spec)
    name = f"--name=vkpy_{backend.node}_{spec.uid}"
    jobs = await remote(
        backend, ["squeue", "--me", "--noheader", "--states=all", name, "--format=%i"]
    )
    assert len(jobs.split()) == 1


async def test_answers_lost_after_sbatch_never_submit_twice(backend: SlurmBackend) -> None:
    """The connection is cut after a bulk submission ran sbatch, before its answer came
    back; for two of the pods, also before the job id was recorded (only the marker is
    left). Created again, every pod keeps its one job and nothing is submitted."""
    specs = [pod(f"lost-{i}", shell("main", "sleep 30")) for i in range(5)]
    real_run = backend.runner.run

    async def answer_lost(argv: Sequence[str], **kwargs: Any) -> Any:
        done = await real_run(argv, **kwargs)
        if "bulk-submit" in argv:
            raise BackendUnavailable("connection lost (injected after the command ran)")
        return done

    backend.runner.run = answer_lost  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(*(backend.create(s) for s in specs), return_exceptions=True)
    finally:
        backend.runner.run = real_run  # type: ignore[method-assign]
    assert all(isinstance(r, BackendUnavailable) for r in results), results
    layout = await backend.layout_now()
    for spec in specs[:2]:
        await remote(backend, ["rm", "--", f"{layout.status(spec.uid)}/_jobid"])
    await asyncio.gather(*(backend.create(s) for s in specs))
    assert backend.submitted == 0
    for spec in specs:
        name = f"--name=vkpy_{backend.node}_{spec.uid}"
        jobs = await remote(
            backend, ["squeue", "--me", "--noheader", "--states=all", name, "--format=%i"]
        )
        recorded = await remote(backend, ["cat", f"{layout.status(spec.uid)}/_jobid"])
        assert jobs.split() == recorded.split(), (spec.name, jobs, recorded)
    for spec in specs:
        await backend.delete(spec.uid, grace_seconds=0)


async def test_delete_stops_running_and_queued_jobs(backend: SlurmBackend) -> None:
    stubborn = pod("stubborn", shell("main", "trap '' TERM; while :; do sleep 1; done"))
    held = pod("held", shell("main", "true"), annotations={"slurm.vkpy.io/flags": "--hold"})
    await backend.create(stubborn)
    await backend.create(held)
    await wait_for(backend, stubborn.uid, running("main"), "the container to run")
    queued = (await backend.list())[held.uid]
    assert isinstance(queued.containers[0].state, Waiting)
    assert "JobHeldUser" in queued.containers[0].state.message

    began = time.monotonic()
    await asyncio.gather(
        backend.delete(stubborn.uid, grace_seconds=2), backend.delete(held.uid, grace_seconds=2)
    )
    assert time.monotonic() - began < 15
    listed = await backend.list()
    assert stubborn.uid not in listed and held.uid not in listed
    names = [f"vkpy_{backend.node}_{p.uid}" for p in (stubborn, held)]
    active = await remote(backend, queue.squeue_argv(names=names, active_only=True))
    assert active.strip() == ""
    # The container is gone from Podman too (it is Podman's, not the job's, process).
    containers = await remote(
        backend,
        ["podman", "ps", "--all", "--format={{.Names}}", f"--filter=name=vkpy-{stubborn.uid}"],
    )
    assert containers.strip() == ""
    gone = await backend.runner.run(["test", "-e", backend.layout.pod(stubborn.uid)])
    assert gone.status == 1
    await backend.delete(stubborn.uid, grace_seconds=0)  # again: nothing to do


async def test_logs_since_and_timestamps(backend: SlurmBackend) -> None:
    """kubectl logs --since / --since-time / --timestamps: the job script stamps each
    line as it comes; lines before ``since`` are left out, following too."""
    spec = pod("since", shell("main", "echo early; sleep 3; echo late; sleep 2; printf end"))
    await backend.create(spec)
    await wait_for(backend, spec.uid, running("main"), "the container to run")
    deadline = time.monotonic() + 60
    while b"early" not in await logs(backend, spec.uid, "main"):
        assert time.monotonic() < deadline, "the container never wrote its first line"
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    between = datetime.now(UTC)  # "early" is written, "late" not yet
    follow = LogOptions(follow=True, since=between)
    followed = b"".join([c async for c in backend.logs(spec.uid, "main", follow)])
    assert followed == b"late\nend"
    await wait_for(backend, spec.uid, ended, "the pod to end")
    assert await logs(backend, spec.uid, "main") == b"early\nlate\nend"
    since = LogOptions(since=between)
    assert b"".join([c async for c in backend.logs(spec.uid, "main", since)]) == b"late\nend"
    shown = LogOptions(timestamps=True, tail_lines=2)
    text = b"".join([c async for c in backend.logs(spec.uid, "main", shown)]).decode()
    lines = text.split("\n")
    assert [line[31:] for line in lines] == ["late", "end"], text
    stamps = [datetime.strptime(line[:26], "%Y-%m-%dT%H:%M:%S.%f") for line in lines]
    late, end = (s.replace(tzinfo=UTC) for s in stamps)
    assert between < late and 1.5 < (end - late).total_seconds() < 5
    later = LogOptions(since=datetime.now(UTC) + timedelta(seconds=1))
    assert b"".join([c async for c in backend.logs(spec.uid, "main", later)]) == b""


# ---------------------------------------------------------------- restarts


async def test_sshd_restart_mid_run(login_user: Endpoints) -> None:
    """The login node's sshd restarts (listener and sessions) while a pod runs: the node
    reports the login node unreachable meanwhile, then reconnects; the pod ends right."""
    ssh = login_user.ssh
    fast_reconnect = {
        "host": ssh.host,
        "port": ssh.port,
        "user": ssh.user,
        "key_files": [str(ssh.client_key)],
        "known_hosts": str(ssh.known_hosts),
        "reconnect_initial_seconds": 0.2,
        "reconnect_max_seconds": 1.0,
    }
    async with backend_on_testbed(
        ssh, login_user.slurm, node_name=node_name("sshd"), overrides={"ssh": fast_reconnect}
    ) as backend:
        spec = pod("survivor", shell("main", "sleep 6; echo survived; exit 4"))
        await backend.create(spec)
        await wait_for(backend, spec.uid, running("main"), "the container to run")
        pid_file = login_user.state / "pids" / "sshd.pid"
        listener = int(pid_file.read_text())
        sessions = _sshd_sessions(backend, ssh.port)
        os.kill(listener, signal.SIGTERM)
        for pid in sessions:
            os.kill(pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(_wait_closed, ssh.port)
            with pytest.raises(BackendUnavailable):
                await backend.list()
            health = await backend.health()
            assert not health.ok and "login node unreachable" in health.message
        finally:
            restarted = await asyncio.to_thread(
                subprocess.run,
                ["make", "testbed-up"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
            )
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        run = await wait_for(backend, spec.uid, ended, "the pod to end after the restart")
        assert run is not None
        assert (states(run)["main"].exit_code, states(run)["main"].reason) == (4, "Error")
        assert await logs(backend, spec.uid, "main") == b"survived\n"
        assert (await backend.health()).ok
        assert backend.runner.connections_opened == 2


def _wait_closed(port: int) -> None:
    deadline = time.monotonic() + 10
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.1)


def _sshd_sessions(backend: SlurmBackend, port: int) -> list[int]:
    """The sshd processes serving this backend's connection (not the listener)."""
    runner = backend.runner
    assert isinstance(runner, SshRunner)
    pids = session_pids(port, runner.local_ports())
    assert pids, "no sshd process serves the backend's connection"
    return pids


# ---------------------------------------------------------------- many pods


async def test_many_pods_bulk_submitted_and_read_on_two_clocks(backend: SlurmBackend) -> None:
    """Created together, the pods go to the login node in a few commands and cost no
    squeue; listings read the status files each time and the queue on its own clock,
    never twice within min_queue_interval_seconds."""
    specs = [pod(f"many-{i}", shell("main", f"sleep 2; exit {i % 3}")) for i in range(PODS_AT_ONCE)]
    calls = backend.runner.calls
    before_create = dict(calls)
    began = time.monotonic()
    await asyncio.gather(*(backend.create(s) for s in specs))
    submitted = time.monotonic() - began
    created = {k: calls[k] - before_create.get(k, 0) for k in calls}
    assert created.get("squeue", 0) == 0, created  # no existence check by squeue
    assert 1 <= created.get("bash", 0) <= 1 + PODS_AT_ONCE // backend.config.submit_batch_max
    floor = backend.config.min_queue_interval_seconds
    queue_reads: list[float] = []
    lists = 0
    deadline = time.monotonic() + 240
    took = []
    while True:
        before = dict(calls)
        listed_at = time.monotonic()
        runs = await backend.list()
        took.append(time.monotonic() - listed_at)
        lists += 1
        delta = {k: calls[k] - before.get(k, 0) for k in calls if calls[k] != before.get(k, 0)}
        assert set(delta) <= {"squeue", "sacct", "bash"}, delta
        assert delta.get("bash", 0) <= 1 and delta.get("sacct", 0) <= delta.get("squeue", 0)
        if delta.get("squeue"):
            assert delta["squeue"] == 1, delta
            queue_reads.append(listed_at)
        if all(ended(runs.get(s.uid)) for s in specs):
            break
        assert time.monotonic() < deadline, "the pods did not end in time"
        await asyncio.sleep(0.5)
    gaps = [b - a for a, b in itertools.pairwise(queue_reads)]
    assert all(gap >= floor - 0.5 for gap in gaps), gaps
    for i, spec in enumerate(specs):
        assert runs[spec.uid].containers[0].state.exit_code == i % 3
    assert backend.runner.connections_opened == 1
    # Finished pods are remembered: later listings read no file.
    before = dict(calls)
    assert len(await backend.list()) == PODS_AT_ONCE
    after = {k: calls[k] - before.get(k, 0) for k in calls if calls[k] != before.get(k, 0)}
    assert set(after) <= {"squeue", "sacct"}, after
    print(
        f"\n{PODS_AT_ONCE} pods: created in {submitted:.2f}s in {created.get('bash')} "
        f"command(s), {lists} listings (median {sorted(took)[len(took) // 2] * 1000:.0f} ms), "
        f"{len(queue_reads)} squeue, {backend.runner.connections_opened} SSH connection"
    )


async def test_restarts_inside_the_job_and_previous_logs(backend: SlurmBackend) -> None:
    """restartPolicy OnFailure: the job script restarts the container after the kubelet's
    10 s back-off; the run before is the container's last state and previous logs."""
    script = (
        'n=$(cat /state/n 2>/dev/null || echo 0); echo "run $n"; '
        'echo $((n + 1)) > /state/n; [ "$n" -ge 1 ]'
    )
    spec = pod(
        "flaky",
        shell("main", script, mounts=(Mount("state", "/state"),)),
        volumes=(Volume("state", "emptyDir"),),
        restart_policy="OnFailure",
    )
    await backend.create(spec)

    def backing_off(run: PodRun | None) -> bool:
        state = run.containers[0].state if run is not None else None
        return isinstance(state, Waiting) and state.reason == "CrashLoopBackOff"

    waiting = await wait_for(backend, spec.uid, lambda r: backing_off(r) or ended(r), "a back-off")
    assert waiting is not None and waiting.containers[0].state.reason == "CrashLoopBackOff"
    assert waiting.containers[0].last_state is not None
    assert waiting.containers[0].last_state.exit_code == 1
    run = await wait_for(backend, spec.uid, ended, "the second run to end", timeout=60)
    assert run is not None
    main = run.containers[0]
    assert (main.state.exit_code, main.restart_count) == (0, 1)
    assert main.last_state is not None and main.last_state.exit_code == 1
    assert await logs(backend, spec.uid, "main") == b"run 1\n"
    previous = [c async for c in backend.logs(spec.uid, "main", LogOptions(previous=True))]
    assert b"".join(previous) == b"run 0\n"


async def test_capacity_and_health(backend: SlurmBackend) -> None:
    capacity = await backend.capacity()
    assert capacity is not None
    # The testbed's slurm.conf: one node with 32 CPUs and 16000 MB.
    assert (capacity.cpu_millis, capacity.memory_bytes) == (32000, 16000 * 1024 * 1024)
    assert (await backend.health()).ok


async def test_deleted_work_directories_can_be_kept(login_user: Endpoints) -> None:
    async with backend_on_testbed(
        login_user.ssh,
        login_user.slurm,
        node_name=node_name("keep"),
        overrides={"work_dir_retention_seconds": 3600},
    ) as backend:
        spec = pod("kept", shell("main", "echo kept"))
        await backend.create(spec)
        await wait_for(backend, spec.uid, ended, "the pod to end")
        await backend.delete(spec.uid, grace_seconds=0)
        kept = f"{backend.layout.trash}/{spec.uid}"
        kept_log = f"{kept}/logs/main.0.log"
        assert (await remote(backend, ["cut", "-c", "32-", kept_log])) == "kept\n"  # unstamped
        assert spec.uid not in await backend.list()
        await remote(backend, ["rm", "-rf", "--", backend.layout.trash])


async def test_slurm_time_limit_is_deadline_exceeded(
    time_limited: tuple[SlurmBackend, PodSpec],
) -> None:
    """Slurm's own TIMEOUT (a --time flag, no activeDeadlineSeconds): Slurm checks time
    limits every 30 s and the shortest limit is a minute, so the pod was submitted when
    the module started and this test, the module's last, only waits for what is left."""
    backend, spec = time_limited
    run = await wait_for(backend, spec.uid, ended, "Slurm's time limit", timeout=180)
    assert run is not None
    assert run.reason == "DeadlineExceeded"
    assert states(run)["main"].reason == "DeadlineExceeded"
    job = await remote(backend, queue.squeue_argv(names=[f"vkpy_{backend.node}_{spec.uid}"]))
    assert queue.parse_squeue(job, backend.node)[spec.uid].state.value == "TIMEOUT"
    await assert_nothing_left(backend, spec, "sleep 3104")
