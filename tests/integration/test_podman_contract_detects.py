"""The contract's checks fail on backends that break it: each broken wrapper below is
caught by the check meant for it (so a passing run means something)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from vkpy.backend import EnvVar, PodSpec
from vkpy.backends.podman import PodmanBackend
from vkpy.config import PodmanConfig
from vkpy.testing import contract
from vkpy.testing.testbed import Endpoints


class Wrapper(PodmanBackend):
    """A Podman backend with one deliberate fault."""


class MangledEnv(Wrapper):
    async def create(self, pod: PodSpec) -> None:
        def mangle(env: tuple[EnvVar, ...]) -> tuple[EnvVar, ...]:
            return tuple(EnvVar(e.name, e.value.strip()) for e in env)

        containers = tuple(replace(c, env=mangle(c.env)) for c in pod.containers)
        await super().create(replace(pod, containers=containers))


class HastyDelete(Wrapper):
    async def delete(self, uid: str, *, grace_seconds: int) -> None:
        self.pending = asyncio.create_task(super().delete(uid, grace_seconds=grace_seconds))
        await asyncio.sleep(0)


class Recreating(Wrapper):
    serial = asyncio.Lock()  # one fault at a time: re-creating, not racing

    async def create(self, pod: PodSpec) -> None:
        async with self.serial:
            if pod.uid in await self.list():
                await self.delete(pod.uid, grace_seconds=0)
            await super().create(pod)


@pytest.fixture
async def make(testbed: Endpoints, tmp_path: Path) -> AsyncIterator[object]:
    made: list[PodmanBackend] = []

    async def build(kind: type[Wrapper]) -> Wrapper:
        config = PodmanConfig(
            socket=str(testbed.podman.socket),
            state_dir=tmp_path / "state",
            memory_dir=tmp_path / "memory",
        )
        backend = kind(config, node_name=f"broken-{uuid.uuid4().hex[:10]}")
        await backend.start()
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await asyncio.gather(*[t for t in [getattr(backend, "pending", None)] if t])
        for uid in await backend.list():
            await PodmanBackend.delete(backend, uid, grace_seconds=0)
        await backend.close()


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        (MangledEnv, contract.check_env_and_args_are_intact),
        (HastyDelete, contract.check_delete_returns_when_gone),
        (Recreating, contract.check_create_is_idempotent),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
async def test_the_check_catches_the_fault(make, kind, check) -> None:
    backend = await make(kind)
    harness = contract.Harness(backend, timeout=20)
    with pytest.raises(contract.ContractFailure):
        await check(harness)
