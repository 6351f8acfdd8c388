"""The backend contract suite, run against real Slurm 22.05 behind the testbed's sshd."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.testing import contract
from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.slurm_config import backend_on_testbed
from vkpy.testing.testbed import Endpoints


@pytest.fixture(scope="module")
def login_user(testbed: Endpoints) -> Endpoints:
    prepare_login_user(testbed.ssh.user)
    return testbed


@pytest.fixture
async def slurm_backend(login_user: Endpoints) -> AsyncIterator[SlurmBackend]:
    node = f"contract-{uuid.uuid4().hex[:10]}"
    async with backend_on_testbed(login_user.ssh, login_user.slurm, node_name=node) as backend:
        yield backend


@pytest.mark.parametrize("check", contract.CHECKS, ids=contract.check_id)
async def test_contract(check: contract.Check, slurm_backend: SlurmBackend) -> None:
    async with contract.Harness(slurm_backend, timeout=90.0, poll_seconds=0.5) as harness:
        await check(harness)
