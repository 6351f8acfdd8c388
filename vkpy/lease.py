"""The node's Lease in kube-node-lease: the heartbeat the node lifecycle controller reads.

Renewed every ``renew_seconds`` with one update using the last known object
(optimistic concurrency); on 409 the Lease is read again and the renewal retried
with back-off (200 ms doubling, cap 7 s), on 404 it is created.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from vkpy.errors import KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube, sleep_backoff
from vkpy.kube.times import micro_time

logger = logging.getLogger(__name__)

NAMESPACE = "kube-node-lease"


def lease_object(node: str, node_uid: str, duration: int, now: datetime) -> JSON:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration,
            "renewTime": micro_time(now),
        },
    }


class LeaseKeeper:
    def __init__(
        self, kube: Kube, node: str, node_uid: str, *, duration: int, renew_seconds: float
    ) -> None:
        self.kube = kube
        self.node = node
        self.node_uid = node_uid
        self.duration = duration
        self.renew_seconds = renew_seconds
        self._lease: JSON | None = None

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{self.node}"

    async def renew(self) -> None:
        """One renewal, retried on conflict until it lands."""
        attempt = 0
        while True:
            now = datetime.now(UTC)
            try:
                if self._lease is None:
                    self._lease = await self.kube.get(self.path)
                lease = dict(self._lease)
                lease["spec"] = {
                    **lease.get("spec", {}),
                    "holderIdentity": self.node,
                    "leaseDurationSeconds": self.duration,
                    "renewTime": micro_time(now),
                }
                self._lease = await self.kube.request("PUT", self.path, body=lease)
                return
            except KubeApiError as exc:
                if exc.status == 404:
                    body = lease_object(self.node, self.node_uid, self.duration, now)
                    try:
                        self._lease = await self.kube.create(
                            f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases", body
                        )
                        return
                    except KubeApiError as create_error:
                        if create_error.status != 409:
                            raise
                elif exc.status != 409:
                    raise
                self._lease = None  # stale: read it again
                await sleep_backoff(attempt)
                attempt += 1

    async def run(self) -> None:
        # On a fixed cadence: a renewal slowed by a busy apiserver does not push the next
        # one later, so renewTime advances by renew_seconds. One that took longer than
        # the period is followed at once, never by a burst of catching up.
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self.renew()
            except KubeApiError as exc:
                self._lease = None
                logger.warning("lease renewal failed: %s", exc)
            due = max(due + self.renew_seconds, loop.time())
            await asyncio.sleep(due - loop.time())
