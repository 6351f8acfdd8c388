"""Events about pods, written as the kubelet writes them.

Recording never blocks pod work: events go into a bounded queue that one loop
writes out (dropping, with a warning, when the API cannot keep up). Repeats of the
same (object, reason, message) bump the existing Event's count instead of creating
another object, like client-go's event correlator.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Literal

from vkpy.errors import KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube
from vkpy.kube.times import rfc3339

logger = logging.getLogger(__name__)

CACHE_SIZE = 4096
QUEUE_SIZE = 10000
MAX_MESSAGE = 1024


def event_object(
    involved: JSON,
    *,
    kind: str,
    type_: str,
    reason: str,
    message: str,
    node: str,
    now: datetime,
) -> JSON:
    meta = involved["metadata"]
    namespace = meta.get("namespace") or "default"
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": kind,
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "type": type_,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": None,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, kube: Kube, node: str) -> None:
        self.kube = kube
        self.node = node
        self._seen: OrderedDict[tuple[str, str, str], tuple[str, str, int]] = OrderedDict()
        self._queue: asyncio.Queue[tuple[JSON, str, str, str, str]] = asyncio.Queue(QUEUE_SIZE)

    def pod(
        self, pod: JSON, type_: Literal["Normal", "Warning"], reason: str, message: str
    ) -> None:
        self._put((pod, "Pod", type_, reason, message))

    def _put(self, item: tuple[JSON, str, str, str, str]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            logger.warning(
                "event queue full: dropped %s for %s", item[3], item[0]["metadata"].get("name")
            )

    async def run(self) -> None:
        """Write queued events, one at a time, forever."""
        while True:
            item = await self._queue.get()
            await self._record(*item)

    async def flush(self) -> None:
        """Write what is queued now (for shutdown and tests)."""
        while not self._queue.empty():
            await self._record(*self._queue.get_nowait())

    async def _record(
        self, involved: JSON, kind: str, type_: str, reason: str, message: str
    ) -> None:
        now = datetime.now(UTC)
        key = (involved["metadata"].get("uid", ""), reason, message)
        try:
            previous = self._seen.get(key)
            if previous is not None:
                namespace, name, count = previous
                await self.kube.merge_patch(
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    {"count": count + 1, "lastTimestamp": rfc3339(now)},
                )
                self._remember(key, (namespace, name, count + 1))
                return
            event = event_object(
                involved,
                kind=kind,
                type_=type_,
                reason=reason,
                message=message,
                node=self.node,
                now=now,
            )
            namespace = event["metadata"]["namespace"]
            await self.kube.create(f"/api/v1/namespaces/{namespace}/events", event)
            self._remember(key, (namespace, event["metadata"]["name"], 1))
        except KubeApiError as exc:
            self._seen.pop(key, None)
            logger.warning(
                "could not record event %s for %s %s: %s",
                reason,
                kind,
                involved["metadata"].get("name"),
                exc,
            )

    def _remember(self, key: tuple[str, str, str], value: tuple[str, str, int]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
