"""The Drain policy of a deleted VirtualNode: its pods stopped in the backend, their
API objects removed, then the Node (its Lease goes with it, by owner reference)."""

from __future__ import annotations

import asyncio
import logging

from vkpy.backend import Backend
from vkpy.errors import KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube

logger = logging.getLogger(__name__)

DEFAULT_GRACE = 30


async def _delete(kube: Kube, path: str, body: JSON | None = None) -> None:
    try:
        await kube.delete(path, body)
    except KubeApiError as exc:
        if exc.status != 404:  # gone already: what was asked
            raise


async def node_pods(kube: Kube, node_name: str) -> list[JSON]:
    listing = await kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={node_name}")
    return list(listing.get("items") or [])


async def stop_backend_pods(backend: Backend, graces: dict[str, int]) -> list[str]:
    """Delete every pod the backend holds for the node; return their job ids."""
    await backend.start()
    try:
        runs = await backend.list()
        await asyncio.gather(
            *(backend.delete(uid, grace_seconds=graces.get(uid, DEFAULT_GRACE)) for uid in runs)
        )
        return [run.job_id or uid for uid, run in runs.items()]
    finally:
        await backend.close()


async def drain(kube: Kube, backend: Backend, node_name: str) -> list[str]:
    """Stop the node's pods in ``backend``, delete their API pods and the Node. Raises
    BackendError when the backend cannot confirm, leaving the Node for a retry."""
    pods = await node_pods(kube, node_name)
    graces = {
        p["metadata"]["uid"]: int(p["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE))
        for p in pods
    }
    stopped = await stop_backend_pods(backend, graces)
    logger.info("node %s drained: %d pods stopped in %s", node_name, len(stopped), backend.kind)
    # Gone from the backend: the API pods go at once, for their controllers to replace.
    await asyncio.gather(*(_delete(kube, _path(p), _final(p)) for p in pods))
    await _delete(kube, f"/api/v1/nodes/{node_name}")
    return stopped


def _path(pod: JSON) -> str:
    meta = pod["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"


def _final(pod: JSON) -> JSON:
    return {"gracePeriodSeconds": 0, "preconditions": {"uid": pod["metadata"]["uid"]}}
