"""Runs every case of the corpus on one node, all at once, and collects what settles.

One watch over the namespace keeps the latest version of each pod, and the last one
seen before a deletion, so a deletion case is judged by the final status its kubelet
wrote, not by whatever a poll happened to catch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from vkpy.errors import KubeApiError
from vkpy.kube.client import Kube
from vkpy.testing.fidelity.case import Action, Case, Settle, pod_manifest
from vkpy.testing.fidelity.corpus import CASES, FIXTURES
from vkpy.testing.fidelity.normalize import Flat, normalize

HOLD_SECONDS = 15.0
EVENT_DELAY = 3.0  # events are recorded asynchronously, after the status
TERMINAL = ("Succeeded", "Failed")


@dataclass
class Pods:
    """What the namespace's watch has seen."""

    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def settled(case: Case, pod: dict[str, Any] | None, pods: Pods, age: float) -> bool:
    if case.settle is Settle.GONE:
        return case.name in pods.gone
    if pod is None:
        return False
    phase = (pod.get("status") or {}).get("phase")
    statuses = _statuses(pod)
    if case.settle is Settle.TERMINAL:  # app containers an init failure kept waiting too
        return phase in TERMINAL and not any("running" in (s.get("state") or {}) for s in statuses)
    if case.settle is Settle.WAITING:
        return any(
            ((s.get("state") or {}).get("waiting") or {}).get("reason") in case.reasons
            for s in statuses
        )
    if case.settle is Settle.RESTARTED:
        return any(s.get("restartCount", 0) >= 1 for s in statuses)
    if case.settle is Settle.RUNNING_AFTER_RESTART:
        return any(
            s.get("restartCount", 0) >= 1 and "running" in (s.get("state") or {}) for s in statuses
        )
    return phase == "Pending" and age >= HOLD_SECONDS  # Settle.HELD


def _ready_for_action(case: Case, pod: dict[str, Any] | None) -> bool:
    if pod is None:
        return False
    if case.action is Action.DELETE_PENDING:
        return any(
            "waiting" in (s.get("state") or {})
            and (s["state"]["waiting"] or {}).get("reason") == "CreateContainerConfigError"
            for s in _statuses(pod)
        )
    return any("running" in (s.get("state") or {}) for s in _statuses(pod))


async def _watch(kube: Kube, namespace: str, pods: Pods, resource_version: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/pods"
    while True:
        query = {"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": 300}
        with contextlib.suppress(KubeApiError):
            async for event in kube.stream(path, query=query, read_timeout=330):
                obj = event.get("object") or {}
                name = (obj.get("metadata") or {}).get("name")
                if event.get("type") == "BOOKMARK" or name is None:
                    continue
                resource_version = obj["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    pods.gone.add(name)
                else:
                    pods.latest[name] = obj
        await asyncio.sleep(0.2)


async def _prepare(kube: Kube, namespace: str) -> None:
    with contextlib.suppress(KubeApiError):
        await kube.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    deadline = time.monotonic() + 60
    while True:  # pods are refused until the controller-manager made this account
        try:
            await kube.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            break
        except KubeApiError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    for fixture in FIXTURES:
        kind = fixture["kind"].lower() + "s"
        with contextlib.suppress(KubeApiError):
            await kube.create(f"/api/v1/namespaces/{namespace}/{kind}", fixture)


async def _events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    listing = await kube.get(
        f"/api/v1/namespaces/{namespace}/events", fieldSelector=f"involvedObject.name={name}"
    )
    return list(listing.get("items") or [])


async def _run_case(
    kube: Kube, namespace: str, case: Case, pods: Pods, *, manifest: dict[str, Any], timeout: float
) -> dict[str, Any]:
    path = f"/api/v1/namespaces/{namespace}/pods"
    await kube.create(path, manifest)
    start = time.monotonic()
    acted = case.action is None
    last: dict[str, Any] | None = None
    while time.monotonic() - start < timeout:
        pod = pods.latest.get(case.name)
        last = pod or last
        if not acted and _ready_for_action(case, pod):
            body = {"gracePeriodSeconds": 0} if case.action is Action.FORCE_DELETE else None
            await kube.delete(f"{path}/{case.name}", body)
            acted = True
        if acted and settled(case, pod, pods, time.monotonic() - start):
            await asyncio.sleep(EVENT_DELAY)
            flat = normalize(
                pods.latest.get(case.name),
                await _events(kube, namespace, case.name),
                restarting=case.restarting,
            )
            return {"outcome": "settled", "flat": flat}
        await asyncio.sleep(0.2)
    flat = normalize(last, await _events(kube, namespace, case.name), restarting=case.restarting)
    return {"outcome": "did not settle", "flat": flat}


async def run_corpus(
    kube: Kube,
    *,
    namespace: str,
    node_selector: dict[str, str],
    tolerations: list[Any],
    cases: list[Case] = CASES,
    timeout: float = 150,
) -> tuple[dict[str, dict[str, Any]], float]:
    """Each case's outcome and normalized view, and the seconds the whole run took."""
    start = time.monotonic()
    await _prepare(kube, namespace)
    listing = await kube.get(f"/api/v1/namespaces/{namespace}/pods")
    pods = Pods()
    watch = asyncio.create_task(
        _watch(kube, namespace, pods, listing["metadata"]["resourceVersion"])
    )
    try:
        results = await asyncio.gather(
            *(
                _run_case(
                    kube,
                    namespace,
                    case,
                    pods,
                    manifest=pod_manifest(
                        case, node_selector=node_selector, tolerations=tolerations
                    ),
                    timeout=timeout,
                )
                for case in cases
            )
        )
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    with contextlib.suppress(KubeApiError):
        await kube.delete(f"/api/v1/namespaces/{namespace}")
    return {
        case.name: result for case, result in zip(cases, results, strict=True)
    }, time.monotonic() - start


def flat_of(result: dict[str, Any]) -> Flat:
    flat: Flat = result["flat"]
    return flat
