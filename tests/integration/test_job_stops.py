"""Every way a job ends early stops its containers, through the runtime: on the real
Slurm 22.05 and on the HTCondor stand-in, both over the real sshd, with the login user's
rootless Podman. With `proctrack/linuxproc` a container (conmon's child) survives the end
of its job unless the job script or the agent stops it, so each test ends by checking
that no process and no container of the pod remains on the login node."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

from vkpy.backend import PodSpec
from vkpy.backends.batch.jobbackend import JobBackend
from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.testing.htcondor_config import htcondor_on_testbed
from vkpy.testing.slurm_config import backend_on_testbed
from vkpy.testing.testbed import Endpoints

from .jobs import (
    assert_nothing_left,
    ended,
    node_name,
    pod,
    remote,
    running,
    shell,
    states,
    wait_for,
)


@pytest.fixture
async def slurm_node(login_user: Endpoints) -> AsyncIterator[SlurmBackend]:
    overrides = {"work_dir_retention_seconds": 600}  # status files outlive delete()
    async with backend_on_testbed(
        login_user.ssh, login_user.slurm, node_name=node_name("stops"), overrides=overrides
    ) as started:
        yield started


@pytest.fixture
async def condor_node(login_user: Endpoints) -> AsyncIterator[HTCondorBackend]:
    async with htcondor_on_testbed(login_user.ssh, node_name=node_name("cstops")) as started:
        yield started


async def job_id(backend: JobBackend, spec: PodSpec) -> str:
    run = await wait_for(backend, spec.uid, running("main"), "the container to run")
    assert run is not None and run.job_id
    return run.job_id


# ---------------------------------------------------------------- Slurm


async def test_a_deadline_then_a_grace_zero_delete_kills_the_container(
    slurm_node: SlurmBackend,
) -> None:
    """The script stops the pod at its deadline with the pod's 30 s; the agent, past the
    deadline, deletes it with 0 s: the container dies at once, not when Slurm gives up."""
    marker = "sleep 3101"
    spec = pod(
        "deadline",
        shell("main", f"echo long; {marker}"),
        active_deadline_seconds=4,
        termination_grace_period_seconds=30,
    )
    await slurm_node.create(spec)
    await job_id(slurm_node, spec)
    await asyncio.sleep(5)  # the deadline has passed: the script is stopping, 30 s to go
    began = time.monotonic()
    await slurm_node.delete(spec.uid, grace_seconds=0)
    assert time.monotonic() - began < 8
    await assert_nothing_left(slurm_node, spec, marker)


async def test_a_graceful_delete_kills_a_program_that_ignores_sigterm(
    slurm_node: SlurmBackend,
) -> None:
    marker = "sleep 3102"
    spec = pod("stubborn", shell("main", f"trap '' TERM; while :; do {marker}; done"))
    await slurm_node.create(spec)
    await job_id(slurm_node, spec)
    began = time.monotonic()
    await slurm_node.delete(spec.uid, grace_seconds=3)
    took = time.monotonic() - began
    assert 3 <= took < 10
    kept = f"{slurm_node.layout.trash}/{spec.uid}/status/main"
    record = await remote(slurm_node, ["cat", kept])
    assert record.splitlines()[-1].split()[:2] == ["exit", "137"]
    await assert_nothing_left(slurm_node, spec, marker)


async def test_a_job_cancelled_outside_vkpy_fails_the_pod_and_stops_its_container(
    slurm_node: SlurmBackend,
) -> None:
    marker = "sleep 3103"
    spec = pod("cancelled", shell("main", marker))
    await slurm_node.create(spec)
    job = await job_id(slurm_node, spec)
    await remote(slurm_node, ["scancel", job])
    run = await wait_for(slurm_node, spec.uid, ended, "the cancelled job to end the pod")
    assert run is not None
    main = states(run)["main"]
    assert main.exit_code != 0
    assert "cancelled" in f"{run.message} {main.message}"
    await assert_nothing_left(slurm_node, spec, marker)


async def test_a_job_killed_before_its_trap_ran_is_swept_by_a_restarted_agent(
    login_user: Endpoints,
) -> None:
    """The job script is SIGKILLed (no SIGTERM first, so no trap runs: an OOM kill, a
    crashed step) while no agent runs: the next agent's listing sees the job ended
    without the script's end record, and removes the container, as it does for an
    orphan deleted at start-up."""
    node = node_name("killed")
    marker = "sleep 3105"
    spec = pod("killed", shell("main", marker))
    async with backend_on_testbed(login_user.ssh, login_user.slurm, node_name=node) as first:
        await first.create(spec)
        job = await job_id(first, spec)
        script = f"spool/job0*{job}/slurm_script"  # slurmd's copy of job.sh, every subshell
        await asyncio.to_thread(subprocess.run, ["pkill", "-KILL", "-f", script], check=True)
        first.book.forget(spec.uid)  # this agent is gone: it neither lists nor deletes
        async with backend_on_testbed(login_user.ssh, login_user.slurm, node_name=node) as second:
            await wait_for(second, spec.uid, ended, "the killed job to end the pod")
            await second.list()
            await assert_nothing_left(second, spec, marker)
            await second.delete(spec.uid, grace_seconds=0)  # the orphan's clean-up
            await assert_nothing_left(second, spec, marker)


# ---------------------------------------------------------------- HTCondor


async def test_condor_rm_outside_vkpy_stops_the_container(condor_node: HTCondorBackend) -> None:
    marker = "sleep 3106"
    spec = pod("removed", shell("main", marker), termination_grace_period_seconds=30)
    await condor_node.create(spec)
    job = await job_id(condor_node, spec)
    await remote(condor_node, ["condor_rm", job.split(".")[0]])
    await wait_for(condor_node, spec.uid, ended, "condor_rm to end the pod")
    await assert_nothing_left(condor_node, spec, marker)


async def test_allowed_job_duration_stops_the_container(condor_node: HTCondorBackend) -> None:
    """The script stops the pod at its deadline with the pod's grace period (60 s, longer
    than HTCondor's backstop allows); allowed_job_duration then holds and vacates the job,
    and the script's stoppers must beat the SIGKILL that follows."""
    marker = "sleep 3107"
    spec = pod(
        "duration",
        shell("main", f"trap '' TERM; {marker}"),
        active_deadline_seconds=2,
        termination_grace_period_seconds=60,
    )
    await condor_node.create(spec)
    run = await wait_for(condor_node, spec.uid, ended, "the backstop to end the pod", timeout=60)
    assert run is not None and run.reason == "DeadlineExceeded"
    await assert_nothing_left(condor_node, spec, marker)
