"""The backend contract suite, run against the real Podman of the testbed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vkpy.backend import Terminated
from vkpy.backends.podman import PodmanBackend
from vkpy.backends.podman import spec as podman_spec
from vkpy.config import PodmanConfig
from vkpy.testing import contract
from vkpy.testing.testbed import Endpoints


def fast_delay(restart_count: int) -> float:
    """Restarts back off 1 s, 2 s, ... instead of the kubelet's 10 s, so checks await them."""
    return 1.0 * (1 << restart_count)


TRAITS = contract.Traits(restart_backoff=fast_delay(0))


async def podman_pods(backend: PodmanBackend, uid: str) -> list[str]:
    """The Podman pods holding the pod's containers, asked of Podman itself."""
    entries = await backend.api.list_containers(
        {podman_spec.UID: uid, podman_spec.NODE: backend.node}
    )
    return sorted({str(e["PodName"]) for e in entries if e.get("PodName")})


HOST = contract.Host(instances=podman_pods, submissions=lambda b: b.api.calls["pod.create"])


@pytest.fixture
async def harness(testbed: Endpoints, tmp_path: Path) -> AsyncIterator[contract.Harness]:
    config = PodmanConfig(
        socket=str(testbed.podman.socket),
        state_dir=tmp_path / "state",
        memory_dir=tmp_path / "memory",
    )
    # A node name of its own: list() filters on it, so tests never see each other's pods.
    node = f"contract-{uuid.uuid4().hex[:10]}"
    started: list[PodmanBackend] = []

    async def start() -> PodmanBackend:
        """A backend for the node; the one before is closed as a crash would leave it:
        its pods stay and nobody watches them."""
        if started:
            await started[-1].close()
        backend = PodmanBackend(config, node_name=node, restart_delay=fast_delay)
        await backend.start()
        started.append(backend)
        return backend

    first = await start()
    try:
        async with contract.Harness(first, traits=TRAITS, successor=start, host=HOST) as made:
            yield made
    finally:
        last = started[-1]
        for uid in await last.list():
            await last.delete(uid, grace_seconds=0)
        left = await last.api.list_containers({podman_spec.NODE: node})
        for backend in started:
            await backend.close()
    assert left == [], "the test left Podman containers behind"


@pytest.mark.parametrize("check", contract.CHECKS, ids=contract.check_id)
async def test_contract(check: contract.Check, harness: contract.Harness) -> None:
    await check(harness)


async def test_delete_removes_a_podman_pod_a_create_left_with_no_container(
    testbed: Endpoints, tmp_path: Path
) -> None:
    """A create cut short (the Podman service restarted) can leave the Podman pod alone,
    with no container to find it by: delete still removes it."""
    config = PodmanConfig(socket=str(testbed.podman.socket), state_dir=tmp_path / "state")
    node = f"empty-{uuid.uuid4().hex[:10]}"
    uid = str(uuid.uuid4())
    backend = PodmanBackend(config, node_name=node)
    await backend.start()
    try:
        labels = {podman_spec.UID: uid, podman_spec.NODE: node}
        name = f"vkpy-default-cut-{uid[:8]}"
        await backend.api.create_pod({"name": name, "labels": labels, "no_infra": True})
        assert await backend.api.list_pods(labels) == [name]
        assert await podman_pods(backend, uid) == []  # no container tells of it
        await backend.delete(uid, grace_seconds=0)
        assert await backend.api.list_pods(labels) == []
    finally:
        await backend.close()


CNI_LEASES = Path("/var/lib/cni/networks/podman")  # host-local IPAM of Podman's bridge


def free_lease() -> Path:
    """A lease file of Podman's bridge no pod holds."""
    assert CNI_LEASES.is_dir(), "the testbed's Podman bridge uses CNI's host-local IPAM"
    return next(p for n in range(2, 250) if not (p := CNI_LEASES / f"10.88.254.{n}").exists())


async def test_a_sandbox_whose_network_failed_is_torn_down_and_started_again(
    harness: contract.Harness,
) -> None:
    """A Podman service stopped halfway through a pod's network setup leaves the IP held
    for the pod's infra container: starting the pod then fails ("duplicate allocation",
    "starting some containers"). Planted here as the soak found it, the pod stays
    waiting, as behind a kubelet's failed sandbox, and once its sandbox is torn down it
    starts, its container once: no exit 128."""
    backend = harness.backend
    assert isinstance(backend, PodmanBackend)
    lease = await asyncio.to_thread(free_lease)
    create_container = backend.api.create_container
    planted: list[str] = []

    async def create_after_planting(body):  # type: ignore[no-untyped-def]
        if not planted:  # the Podman pod and its infra container exist by now
            infra = await backend.api.infra_container(str(body["pod"]))
            await asyncio.to_thread(lease.write_text, f"{infra}\r\neth0")
            planted.append(infra)
        return await create_container(body)

    backend.api.create_container = create_after_planting  # type: ignore[method-assign]
    pod = harness.pod("sandbox", [harness.container("main", "echo ran; exit 0")])
    try:
        await harness.create(pod)
        run = await harness.finished(pod.uid)
        released = not await asyncio.to_thread(lease.exists)  # the teardown gave it back
    finally:
        await asyncio.to_thread(lease.unlink, missing_ok=True)
    assert planted and released, "the stale IP was never planted, or never given back"
    state = run.containers[0].state
    assert isinstance(state, Terminated) and state.exit_code == 0, state
    assert await harness.logs(pod.uid, "main") == b"ran\n"


class Killed(Exception):
    """The agent dies here, as under kill -9: nothing after it runs, no clean-up."""


async def test_a_pod_an_earlier_agent_left_half_made_is_made_afresh(
    harness: contract.Harness,
) -> None:
    """An agent killed between its Podman pod's containers (a soak's kill -9) leaves the
    Podman pod half-made. The next agent neither reports it (the pod controller would
    adopt a pod that never starts) nor keeps it: it is removed, the pod is created
    afresh and runs once."""
    first = harness.backend
    assert isinstance(first, PodmanBackend)
    made = 0
    create_container = first.api.create_container

    async def dies_after_one(body):  # type: ignore[no-untyped-def]
        nonlocal made
        if made == 1:
            raise Killed
        made += 1
        return await create_container(body)

    async def no_clean_up(*args: object) -> None:
        return None

    first.api.create_container = dies_after_one  # type: ignore[method-assign]
    first._discard = no_clean_up  # type: ignore[method-assign]
    pod = harness.pod(
        "halfmade",
        [harness.container("main", "echo once; exit 0"), harness.container("side", "exit 0")],
    )
    with pytest.raises(Killed):
        await harness.create(pod)
    second = await harness.restarted()
    assert isinstance(second, PodmanBackend)
    assert await podman_pods(second, pod.uid), "no half-made pod to begin with"
    assert pod.uid not in await second.list()
    assert await podman_pods(second, pod.uid) == []  # removed by that listing
    await harness.create(pod)
    run = await harness.finished(pod.uid)
    assert all(isinstance(c.state, Terminated) and c.state.exit_code == 0 for c in run.containers)
    assert await harness.logs(pod.uid, "main") == b"once\n"
