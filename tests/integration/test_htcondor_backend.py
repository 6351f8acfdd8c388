"""HTCondorBackend over the testbed's real sshd, as its unprivileged login user, against
the HTCondor stand-in (`vkpy.testing.condor_standin`): condor_submit/q/history/rm with
HTCondor's JSON ClassAds, jobs really run, containers under the user's rootless Podman.
No HTCondor pool runs here: the schedd, matchmaking and execute nodes are not exercised."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator

import pytest

from vkpy.backend import EnvVar, File, Mount, PodRun, Running, Terminated, Volume
from vkpy.backends.htcondor import queue
from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.testing.htcondor_config import htcondor_on_testbed
from vkpy.testing.testbed import Endpoints

from .jobs import ended, logs, node_name, pod, remote, running, shell, states, wait_for

PODS_AT_ONCE = int(os.environ.get("VKPY_HTCONDOR_PODS", "100"))
HOSTILE = [
    'it\'s "quoted"',
    "$(id) `id` ${HOME}",
    "a;b|c&d>e<f",
    "two\nlines",
    "ünïcødé ✓ 日本",
    "",
    "  spaced  ",
    "\\back\\slash",
]


@pytest.fixture
async def backend(login_user: Endpoints) -> AsyncIterator[HTCondorBackend]:
    async with htcondor_on_testbed(login_user.ssh, node_name=node_name("condor")) as started:
        yield started


@pytest.fixture
async def transfer_backend(login_user: Endpoints) -> AsyncIterator[HTCondorBackend]:
    # With file transfer the files come back at the job's end: that the job runs comes
    # from its event log, on the fast clock. The queue is read once, at the start, and
    # never again: what the test sees of a running job cannot come from condor_q.
    overrides = {
        "file_transfer": "transfer",
        "queue_read_seconds": 3600,
        "min_queue_interval_seconds": 3600,
    }
    async with htcondor_on_testbed(
        login_user.ssh, node_name=node_name("xfer"), overrides=overrides
    ) as started:
        yield started


async def ads(backend: HTCondorBackend, argv: list[str]) -> list[dict[str, object]]:
    return queue.parse_ads(await remote(backend, argv))


async def test_pod_with_init_container_files_secret_and_env(backend: HTCondorBackend) -> None:
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
    began = time.monotonic()
    await backend.create(spec)
    submitted = time.monotonic() - began
    run = await wait_for(backend, spec.uid, lambda r: r is not None and bool(r.job_id), "a job")
    assert run is not None
    job_id = run.job_id
    # The job carries the pod's UID; the constraint on the node attribute finds it.
    jobs = await ads(backend, queue.condor_q_argv(backend.node, uid=spec.uid))
    jobs += await ads(backend, queue.condor_history_argv(backend.node, [job_id]))
    assert {f"{a['ClusterId']}.{a['ProcId']}" for a in jobs if a["VkpyPodUID"] == spec.uid} == {
        job_id
    }
    directory = backend.layout.pod(spec.uid)
    description = await remote(backend, ["cat", f"{directory}/job.sub"])
    for value in ("s3cr3t", "hello 'world'", "app.conf"):
        assert value not in description
    modes = await remote(
        backend,
        ["stat", "-c", "%a", directory, f"{directory}/volumes/token/token", f"{directory}/job.sub"],
    )
    assert modes.split() == ["700", "440", "600"]  # the secret's mode is the pod's

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
    # The job exits with the worst exit code: HTCondor's record says 3.
    (record,) = [
        ad
        for ad in await ads(backend, queue.condor_history_argv(backend.node, [job_id]))
        if ad["VkpyPodUID"] == spec.uid
    ]
    assert (record["JobStatus"], record["ExitCode"]) == (4, 3)
    print(f"\ncreate() to job submitted: {submitted * 1000:.0f} ms")


async def test_hostile_args_and_env_arrive_byte_for_byte(backend: HTCondorBackend) -> None:
    script = (
        'for a in "$@"; do printf "[%s]" "$a"; done; printf "|%s" "$V0" "$V1" "$V2" "$V3" "$V4"'
    )
    container = shell("main", script, env=tuple(EnvVar(f"V{i}", v) for i, v in enumerate(HOSTILE)))
    container = type(container)(
        name="main",
        image=container.image,
        command=("sh", "-c", script, "sh", *HOSTILE),
        env=container.env,
    )
    spec = pod("hostile", container)
    await backend.create(spec)
    await wait_for(backend, spec.uid, ended, "the pod to end")
    expected = "".join(f"[{v}]" for v in HOSTILE) + "".join(f"|{v}" for v in HOSTILE[:5])
    assert (await logs(backend, spec.uid, "main")).decode() == expected


async def test_exit_code_and_delete_of_a_running_pod(backend: HTCondorBackend) -> None:
    failing = pod("three", shell("main", "exit 3"))
    stubborn = pod("stubborn", shell("main", "trap 'echo term; exit 0' TERM; sleep 300 & wait"))
    await backend.create(failing)
    await backend.create(stubborn)
    run = await wait_for(backend, failing.uid, ended, "exit 3")
    assert run is not None
    assert (run.containers[0].state.exit_code, run.containers[0].state.reason) == (3, "Error")
    await wait_for(backend, stubborn.uid, running("main"), "the container to run")
    began = time.monotonic()
    await backend.delete(stubborn.uid, grace_seconds=3)
    assert time.monotonic() - began < 20
    assert stubborn.uid not in await backend.list()
    assert await ads(backend, queue.condor_q_argv(backend.node, uid=stubborn.uid)) == []
    containers = await remote(
        backend,
        ["podman", "ps", "--all", "--format={{.Names}}", f"--filter=name=vkpy-{stubborn.uid}"],
    )
    assert containers.strip() == ""
    gone = await backend.runner.run(["test", "-e", backend.layout.pod(stubborn.uid)])
    assert gone.status == 1
    await backend.delete(stubborn.uid, grace_seconds=0)  # again: nothing to do


async def test_many_pods_bulk_submitted_and_read_on_two_clocks(backend: HTCondorBackend) -> None:
    specs = [pod(f"many-{i}", shell("main", f"sleep 2; exit {i % 3}")) for i in range(PODS_AT_ONCE)]
    calls = backend.runner.calls
    before_create = dict(calls)
    began = time.monotonic()
    await asyncio.gather(*(backend.create(s) for s in specs))
    submitted = time.monotonic() - began
    created = {k: calls[k] - before_create.get(k, 0) for k in calls}
    assert created.get("condor_q", 0) == 0, created  # no existence check by condor_q
    assert backend.submitted == PODS_AT_ONCE
    floor = backend.config.min_queue_interval_seconds
    queue_reads: list[float] = []
    lists = 0
    deadline = time.monotonic() + 300
    while True:
        before = dict(calls)
        listed_at = time.monotonic()
        runs = await backend.list()
        lists += 1
        delta = {k: calls[k] - before.get(k, 0) for k in calls if calls[k] != before.get(k, 0)}
        assert delta.get("condor_q", 0) <= 1 and delta.get("condor_history", 0) <= 1, delta
        assert set(delta) <= {"condor_q", "condor_history", "bash"}, delta
        if delta.get("condor_q"):
            queue_reads.append(listed_at)
        if all(ended(runs.get(s.uid)) for s in specs):
            break
        assert time.monotonic() < deadline, "the pods did not end in time"
        await asyncio.sleep(0.5)
    gaps = [b - a for a, b in itertools.pairwise(queue_reads)]
    assert all(gap >= floor - 0.5 for gap in gaps), gaps
    for i, spec in enumerate(specs):
        state = runs[spec.uid].containers[0].state
        assert isinstance(state, Terminated) and state.exit_code == i % 3
    assert backend.runner.connections_opened == 1
    before = dict(calls)
    assert len(await backend.list()) == PODS_AT_ONCE
    # Every pod finished and known: no file is read, no history.
    after = {k: calls[k] - before.get(k, 0) for k in calls if calls[k] != before.get(k, 0)}
    assert set(after) <= {"condor_q"}, after
    print(
        f"\n{PODS_AT_ONCE} pods: created in {submitted:.2f}s, {lists} listings, "
        f"{len(queue_reads)} condor_q, {backend.runner.connections_opened} SSH connection"
    )


async def test_file_transfer_runs_the_pod_in_the_jobs_scratch_directory(
    transfer_backend: HTCondorBackend,
) -> None:
    backend = transfer_backend
    config = Volume("config", "files", files=(File("app.conf", b"mode = 'fast'\n"),))
    secret = Volume(
        "token", "files", files=(File("token", b"s3cr3t-token\n", mode=0o440),), sensitive=True
    )
    work = Volume("work", "emptyDir")
    spec = pod(
        "transfer",
        shell(
            "reader",
            "cat /etc/app/app.conf /var/run/token/token /work/from-init",
            mounts=(
                Mount("config", "/etc/app"),
                Mount("token", "/var/run/token"),
                Mount("work", "/work"),
            ),
        ),
        shell("failer", "sleep 1; exit 3"),
        init_containers=(
            shell(
                "setup",
                "echo prepared > /work/from-init; sleep 4",
                mounts=(Mount("work", "/work"),),
            ),
        ),
        volumes=(config, secret, work),
    )
    await backend.create(spec)
    directory = backend.layout.pod(spec.uid)
    description = await remote(backend, ["cat", f"{directory}/job.sub"])
    assert "should_transfer_files = YES" in description

    def initializing(run: PodRun | None) -> bool:
        return run is not None and isinstance(run.init_containers[0].state, Running)

    # While the job runs its files are away: the queue alone says it runs, never "lost".
    run = await wait_for(backend, spec.uid, initializing, "the job to run")
    assert run is not None and run.job_id
    scratch = f".condor-standin/execute/dir_{run.job_id}"
    where = await backend.runner.run(
        [
            "sh",
            "-c",
            'test -s "$HOME/$1/status/_job" && test ! -e "$2/status/_job"',
            "sh",
            scratch,
            directory,
        ]
    )
    assert where.ok, "the job did not run in its own scratch directory"
    assert await logs(backend, spec.uid, "setup") == b""  # they come back at the end

    run = await wait_for(backend, spec.uid, ended, "the pod to end")
    assert run is not None
    found = states(run)
    assert (found["setup"].exit_code, found["setup"].reason) == (0, "Completed")
    assert found["reader"].exit_code == 0
    assert (found["failer"].exit_code, found["failer"].reason) == (3, "Error")
    assert await logs(backend, spec.uid, "reader") == b"mode = 'fast'\ns3cr3t-token\nprepared\n"
    # The emptyDir lived in the scratch directory, which is gone; only status and logs
    # came back into the pod's directory.
    gone = await backend.runner.run(
        [
            "sh",
            "-c",
            'test ! -e "$HOME/$1" && test ! -e "$2/volumes/work/from-init"',
            "sh",
            scratch,
            directory,
        ]
    )
    assert gone.ok, "the pod's directory was used as the job's working directory"
    (record,) = await ads(backend, queue.condor_history_argv(backend.node, [run.job_id]))
    assert (record["JobStatus"], record["ExitCode"]) == (4, 3)
