"""The backend contract suite, run against the HTCondor stand-in behind the testbed's sshd
(no HTCondor pool: the stand-in runs the jobs and answers in HTCondor's formats)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.testing import contract
from vkpy.testing.htcondor_config import htcondor_on_testbed
from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.testbed import Endpoints


@pytest.fixture
async def htcondor_backend(testbed: Endpoints) -> AsyncIterator[HTCondorBackend]:
    prepare_login_user(testbed.ssh.user)
    node = f"ccontract-{uuid.uuid4().hex[:10]}"
    async with htcondor_on_testbed(testbed.ssh, node_name=node) as backend:
        yield backend


@pytest.mark.parametrize("check", contract.CHECKS, ids=contract.check_id)
async def test_contract(check: contract.Check, htcondor_backend: HTCondorBackend) -> None:
    async with contract.Harness(htcondor_backend, timeout=90.0, poll_seconds=0.5) as harness:
        await check(harness)
