"""The backend contract suite, run against the HTCondor stand-in behind the testbed's sshd
(no HTCondor pool: the stand-in runs the jobs and answers in HTCondor's formats)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from vkpy.backends.htcondor import queue
from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.testing import contract
from vkpy.testing.htcondor_config import htcondor_on_testbed
from vkpy.testing.testbed import Endpoints

from .jobs import job_harness, remote


async def condor_jobs(backend: HTCondorBackend, uid: str) -> list[str]:
    """The pod's job IDs, asked of condor_q itself."""
    ads = queue.parse_ads(await remote(backend, queue.condor_q_argv(backend.node, uid=uid)))
    return [f"{ad['ClusterId']}.0" for ad in ads]


HOST = contract.Host(instances=condor_jobs, submissions=lambda b: b.submitted)


@pytest.fixture
async def harness(login_user: Endpoints) -> AsyncIterator[contract.Harness]:
    node = f"ccontract-{uuid.uuid4().hex[:10]}"

    def start() -> contextlib.AbstractAsyncContextManager[HTCondorBackend]:
        return htcondor_on_testbed(login_user.ssh, node_name=node)

    async with job_harness(start, HOST) as made:
        yield made


@pytest.mark.parametrize("check", contract.CHECKS, ids=contract.check_id)
async def test_contract(check: contract.Check, harness: contract.Harness) -> None:
    await check(harness)
