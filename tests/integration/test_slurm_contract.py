"""The backend contract suite, run against real Slurm 22.05 behind the testbed's sshd."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.testing import contract
from vkpy.testing.slurm_config import backend_on_testbed
from vkpy.testing.testbed import Endpoints

from .jobs import job_harness, remote


async def slurm_jobs(backend: SlurmBackend, uid: str) -> list[str]:
    """The pod's job IDs, asked of squeue itself."""
    name = f"--name=vkpy_{backend.node}_{uid}"
    argv = ["squeue", "--me", "--noheader", "--states=all", name, "--format=%i"]
    return (await remote(backend, argv)).split()


HOST = contract.Host(instances=slurm_jobs, submissions=lambda b: b.submitted)


@pytest.fixture
async def harness(login_user: Endpoints) -> AsyncIterator[contract.Harness]:
    node = f"contract-{uuid.uuid4().hex[:10]}"

    def start() -> contextlib.AbstractAsyncContextManager[SlurmBackend]:
        return backend_on_testbed(login_user.ssh, login_user.slurm, node_name=node)

    async with job_harness(start, HOST) as made:
        yield made


@pytest.mark.parametrize("check", contract.CHECKS, ids=contract.check_id)
async def test_contract(check: contract.Check, harness: contract.Harness) -> None:
    await check(harness)
