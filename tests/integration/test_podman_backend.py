"""The backend contract suite, run against the real Podman of the testbed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vkpy.backends.podman import PodmanBackend
from vkpy.backends.podman import spec as podman_spec
from vkpy.config import PodmanConfig
from vkpy.testing import contract
from vkpy.testing.testbed import Endpoints


@pytest.fixture
async def backend(testbed: Endpoints, tmp_path: Path) -> AsyncIterator[PodmanBackend]:
    config = PodmanConfig(
        socket=str(testbed.podman.socket),
        state_dir=tmp_path / "state",
        memory_dir=tmp_path / "memory",
    )
    # A node name of its own: list() filters on it, so tests never see each other's pods.
    started = PodmanBackend(config, node_name=f"contract-{uuid.uuid4().hex[:10]}")
    await started.start()
    try:
        yield started
    finally:
        for uid in await started.list():
            await started.delete(uid, grace_seconds=0)
        left = await started.api.list_containers({podman_spec.NODE: started.node})
        await started.close()
    assert left == [], "the test left Podman containers behind"


@pytest.mark.parametrize("check", contract.CHECKS, ids=contract.check_id)
async def test_contract(check: contract.Check, backend: PodmanBackend) -> None:
    async with contract.Harness(backend) as harness:
        await check(harness)
