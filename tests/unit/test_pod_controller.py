"""The pod controller's rules, on the in-memory Kubernetes API and an instant backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from vkpy.backend import PodRun, Running
from vkpy.errors import BackendUnavailable
from vkpy.kube.times import rfc3339
from vkpy.kube.watching import Snapshot
from vkpy.pods import Stage, controller, steps
from vkpy.testing.instant import EXIT_ANNOTATION

from .podworld import NODE, NS, World, api_pod, path, running, until


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after milliseconds, not the kubelet's seconds."""
    monkeypatch.setattr(steps, "restart_delay", lambda attempts: 0.01)
    monkeypatch.setattr(controller, "RETRY_FIRST", 0.005)


def phase_is(world: World, phase: str, name: str = "web"):
    return lambda: world.status(name).get("phase") == phase


# ---------------------------------------------------------------- create once


async def test_a_create_the_backend_failed_is_retried_and_done_once(quick_retries) -> None:
    world = World()
    world.backend.create_errors = [BackendUnavailable("login node unreachable")]
    async with running(world):
        pod = await world.create(api_pod())
        await until(phase_is(world, "Running"), what="Running")
    uid = pod["metadata"]["uid"]
    assert world.backend.create_calls == [uid, uid]  # tried twice
    assert world.backend.creates == 1  # made once
    waiting = world.status_writes()[0]["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "ProviderFailed", "message": "login node unreachable"}
    assert False in world.seen  # the node was told the backend is unreachable
    assert ("ProviderFailed", "login node unreachable") in await world.recorded_events()


async def test_a_pod_is_never_created_twice_when_its_status_write_fails(quick_retries) -> None:
    world = World()
    world.kube.fail("PATCH", "/pods/web/status", status=500, times=2)
    async with running(world):
        pod = await world.create(api_pod())
        await until(phase_is(world, "Running"), what="Running")
        uid = pod["metadata"]["uid"]
        for _ in range(5):  # resyncs and re-listings mark it again and again
            world.pods.mark(uid)
        await world.pods.handle(Snapshot((await world.kube.get(path()),)))
        await world.settled()
    assert world.backend.create_calls == [uid]
    assert len(world.kube.sent("PATCH", f"{path()}/status")) == 3  # two failed, one written
    assert world.pods.tracked[uid].stage is Stage.IN_BACKEND


# ---------------------------------------------------------------- delete


async def test_a_deleted_pod_is_stopped_reported_and_deleted_with_grace_0_and_its_uid() -> None:
    world = World()
    async with running(world):
        pod = await world.create(api_pod())
        uid = pod["metadata"]["uid"]
        await until(phase_is(world, "Running"), what="Running")
        await world.kube.delete(path(), {"gracePeriodSeconds": 17})  # what kubectl does
        await until(lambda: world.kube.object(path()) is None, what="the pod to go")
    assert world.backend.delete_calls == [(uid, 17)]
    assert uid not in world.backend.runs
    final = world.status_writes()[-1]
    assert final["phase"] == "Failed"
    assert final["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    deletes = world.kube.sent("DELETE", path())
    assert deletes[-1] == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    }
    assert ("Killing", "Stopping container main") in await world.recorded_events()
    assert world.pods.tracked == {}


async def test_a_pod_deleted_after_a_create_cut_short_is_deleted_in_the_backend_too() -> None:
    """The backend went away mid-create: it may hold part of the pod (a Podman pod with
    no container yet, a job whose sbatch answer was lost), so the delete asks it."""
    world = World()
    world.backend.create_errors = [BackendUnavailable("Server disconnected")] * 100
    async with running(world):
        pod = await world.create(api_pod())
        uid = pod["metadata"]["uid"]
        await until(lambda: bool(world.backend.create_calls), what="the create tried")
        await world.kube.delete(path(), {"gracePeriodSeconds": 3})  # before the retry
        await until(lambda: world.kube.object(path()) is None, what="the pod to go")
    assert world.backend.creates == 0
    assert world.backend.delete_calls == [(uid, 0)]
    assert world.pods.tracked == {}


async def test_the_final_delete_spares_a_new_pod_of_the_same_name() -> None:
    world = World()
    world.backend.delete_gate = gate = asyncio.Event()
    async with running(world):
        old = await world.create(api_pod())
        old_uid = old["metadata"]["uid"]
        await until(phase_is(world, "Running"), what="Running")
        await world.kube.delete(path(), {"gracePeriodSeconds": 5})
        await until(world.backend.deleting.is_set, what="the backend delete")
        # Meanwhile the old pod is force-deleted and a new one takes its name.
        await world.kube.delete(path(), {"gracePeriodSeconds": 0})
        new = await world.create(api_pod(node="elsewhere"))
        gate.set()
        await until(lambda: old_uid not in world.pods.tracked, what="the old pod done")
    survivor = world.kube.object(path())
    assert survivor is not None and survivor["metadata"]["uid"] == new["metadata"]["uid"]
    assert survivor["status"] == {"phase": "Pending"}  # not the old pod's final status
    assert world.kube.sent("DELETE", path())[-1]["preconditions"] == {"uid": old_uid}


# ---------------------------------------------------------------- orphans


async def test_orphans_are_removed_after_the_first_listing_and_not_before() -> None:
    world = World()
    kept = await world.create(api_pod())
    kept_uid = kept["metadata"]["uid"]
    world.backend.runs[kept_uid] = PodRun(kept_uid, NS, "web", job_id="7")
    world.backend.runs["gone-uid"] = PodRun("gone-uid", NS, "old", job_id="8")
    pods = world.pods
    await pods.adopt()
    await pods.poll()
    pods.backend_changed(PodRun("gone-uid", NS, "old", job_id="8", reason="Changed"))
    await world.settled()
    assert world.backend.delete_calls == []  # the API has not been heard yet
    assert set(world.backend.runs) == {kept_uid, "gone-uid"}
    listing = await world.kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={NODE}")
    await pods.handle(Snapshot(tuple(listing["items"])))
    await until(lambda: "gone-uid" not in world.backend.runs, what="the orphan removed")
    await world.settled()
    assert world.backend.delete_calls == [("gone-uid", 0)]
    assert world.backend.create_calls == []  # the other was adopted, not made again
    assert pods.tracked[kept_uid].stage is Stage.IN_BACKEND
    assert "gone-uid" not in pods.tracked
    await pods.close()


# ---------------------------------------------------------------- lost


async def test_a_pod_the_backend_lost_fails_with_not_found_and_is_not_made_again() -> None:
    world = World()
    async with running(world):
        pod = await world.create(api_pod())
        uid = pod["metadata"]["uid"]
        await until(phase_is(world, "Running"), what="Running")
        del world.backend.runs[uid]  # not by the agent's hand
        await world.pods.poll()
        await until(phase_is(world, "Failed"), what="Failed")
        world.pods.mark(uid)
        await world.settled()
    status = world.status()
    assert (status["reason"], status["message"]) == (
        "NotFound",
        "the pod disappeared from the backend",
    )
    assert world.backend.create_calls == [uid]
    assert world.pods.tracked[uid].stage is Stage.OUT


async def test_a_listing_begun_before_a_create_ended_does_not_lose_the_pod() -> None:
    """The backend's listing is under way while a create ends (as in a soak): that
    listing predates the pod, so it must not fail the pod as gone from the backend."""
    world = World()
    async with running(world):
        await world.create(api_pod("first"))  # the controller is up: adopted, watching
        await until(phase_is(world, "Running", "first"), what="the first pod Running")
        real_list = world.backend.list

        async def listed_before_the_create():  # type: ignore[no-untyped-def]
            before = dict(await real_list())
            await until(
                lambda: (
                    len([e for e in world.pods.tracked.values() if e.stage is Stage.IN_BACKEND])
                    == 2
                ),
                what="the create to end",
            )
            return before

        world.backend.list = listed_before_the_create  # type: ignore[method-assign]
        polling = asyncio.create_task(world.pods.poll())
        await asyncio.sleep(0)  # the listing has begun
        await world.create(api_pod())
        await polling
        world.backend.list = real_list  # type: ignore[method-assign]
        await world.pods.poll()
        await until(phase_is(world, "Running"), what="Running")
    assert "reason" not in world.status()
    assert len(world.backend.create_calls) == 2


# ---------------------------------------------------------------- deadline


async def test_a_pod_past_its_active_deadline_fails_and_is_stopped() -> None:
    world = World()
    pod = api_pod(activeDeadlineSeconds=30)
    pod["status"]["startTime"] = rfc3339(datetime.now(UTC) - timedelta(hours=1))
    async with running(world):
        uid = (await world.create(pod))["metadata"]["uid"]
        await until(phase_is(world, "Failed"), what="Failed")
        await world.settled()
    status = world.status()
    assert status["reason"] == "DeadlineExceeded"
    assert status["message"] == "Pod was active on the node longer than the specified deadline"
    assert world.backend.delete_calls == [(uid, 0)]
    assert "terminated" in status["containerStatuses"][0]["state"]


async def test_the_deadline_is_kept_by_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "DEADLINE_SLACK", 0.0)
    world = World()
    async with running(world):
        # A deadline long enough that a loaded machine still sees Running before it.
        uid = (await world.create(api_pod(activeDeadlineSeconds=3)))["metadata"]["uid"]
        await until(phase_is(world, "Running"), what="Running")
        await until(lambda: world.pods.workers.timer(uid, "deadline") is not None, what="timer")
        await until(phase_is(world, "Failed"), timeout=8, what="Failed at the deadline")
    assert world.status()["reason"] == "DeadlineExceeded"
    assert world.backend.delete_calls == [(uid, 0)]


# ---------------------------------------------------------------- terminal


async def test_a_terminal_pod_is_never_written_again() -> None:
    world = World()
    pod = api_pod(restartPolicy="Never")
    pod["metadata"]["annotations"] = {EXIT_ANNOTATION: "0"}
    async with running(world):
        uid = (await world.create(pod))["metadata"]["uid"]
        await until(phase_is(world, "Succeeded"), what="Succeeded")
        await world.settled()
        writes = len(world.status_writes())
        run = world.backend.runs[uid]
        world.backend.runs[uid] = replace(
            run, containers=(replace(run.containers[0], state=Running(datetime.now(UTC))),)
        )
        await world.pods.poll()
        world.pods.mark(uid)
        await world.settled()
    assert len(world.status_writes()) == writes
    assert world.status()["phase"] == "Succeeded"
    assert uid in world.backend.runs  # kept, for its logs


async def test_a_pod_terminal_when_first_seen_is_neither_created_nor_written() -> None:
    world = World()
    pod = api_pod()
    pod["status"] = {"phase": "Failed", "reason": "Evicted"}
    async with running(world):
        await world.create(pod)
        await until(lambda: bool(world.pods.tracked), what="the pod tracked")
        await world.settled()
    assert world.backend.create_calls == []
    assert world.status_writes() == []
    assert world.status() == {"phase": "Failed", "reason": "Evicted"}
