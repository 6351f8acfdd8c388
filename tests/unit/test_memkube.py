"""The in-memory Kubernetes API answers as the apiserver does, where the agent relies on it."""

from __future__ import annotations

import pytest

from vkpy.errors import KubeApiError
from vkpy.kube.watching import Event, Gone, Snapshot, list_and_watch, watch_once
from vkpy.testing.memkube import MemKube

PODS = "/api/v1/namespaces/ns/pods"


def pod(name: str, node: str = "n1") -> dict:
    return {"metadata": {"name": name}, "spec": {"nodeName": node}, "status": {"phase": "Pending"}}


async def test_errors_carry_the_status_the_real_client_gives() -> None:
    kube = MemKube()
    with pytest.raises(KubeApiError) as missing:
        await kube.get(f"{PODS}/nope")
    assert missing.value.status == 404
    assert str(missing.value).startswith(f"GET {PODS}/nope: 404 ")
    await kube.create(PODS, pod("a"))
    with pytest.raises(KubeApiError) as taken:
        await kube.create(PODS, pod("a"))
    assert taken.value.status == 409


async def test_lists_select_by_field_and_watches_follow_from_the_list() -> None:
    kube = MemKube()
    await kube.create(PODS, pod("mine"))
    await kube.create(PODS, pod("theirs", node="n2"))
    changes = list_and_watch(kube, "/api/v1/pods", {"fieldSelector": "spec.nodeName=n1"})
    first = await anext(changes)
    assert isinstance(first, Snapshot)
    assert [p["metadata"]["name"] for p in first.items] == ["mine"]
    await kube.create(PODS, pod("later"))
    await kube.create(PODS, pod("not-here", node="n2"))
    await kube.merge_patch(f"{PODS}/later/status", {"status": {"phase": "Running"}})
    added, modified = await anext(changes), await anext(changes)
    assert isinstance(added, Event) and added.type == "ADDED"
    assert isinstance(modified, Event) and modified.object["status"]["phase"] == "Running"
    await changes.aclose()


async def test_an_expired_watch_says_gone() -> None:
    kube = MemKube()
    listing = await kube.get(PODS)
    kube.expire_watches()
    with pytest.raises(Gone):
        async for _ in watch_once(kube, PODS, {}, listing["metadata"]["resourceVersion"]):
            pass


async def test_status_patches_write_the_status_only_and_check_the_uid() -> None:
    kube = MemKube()
    made = await kube.create(PODS, pod("a"))
    patched = await kube.merge_patch(
        f"{PODS}/a/status",
        {
            "metadata": {"uid": made["metadata"]["uid"], "labels": {"x": "y"}},
            "status": {"phase": "Running"},
        },
    )
    assert patched["status"] == {"phase": "Running"}
    assert "labels" not in patched["metadata"]
    with pytest.raises(KubeApiError) as other:
        await kube.merge_patch(f"{PODS}/a/status", {"metadata": {"uid": "other"}, "status": {}})
    assert other.value.status == 409


async def test_deletes_keep_preconditions_and_grace() -> None:
    kube = MemKube()
    made = await kube.create(PODS, pod("a"))
    with pytest.raises(KubeApiError) as other:
        await kube.delete(f"{PODS}/a", {"gracePeriodSeconds": 0, "preconditions": {"uid": "x"}})
    assert other.value.status == 409
    await kube.delete(f"{PODS}/a", {"gracePeriodSeconds": 30})  # bound: only marked
    marked = await kube.get(f"{PODS}/a")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert marked["metadata"]["deletionTimestamp"]
    uid = made["metadata"]["uid"]
    await kube.delete(f"{PODS}/a", {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
    assert kube.object(f"{PODS}/a") is None
    with pytest.raises(KubeApiError) as gone:
        await kube.delete(f"{PODS}/a", {"gracePeriodSeconds": 0})
    assert gone.value.status == 404
