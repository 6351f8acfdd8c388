"""Watching one kind of object: list, then watch from the list's resourceVersion.

Three small pieces, as in kopf: `watch_once` reads one watch stream; `list_and_watch`
lists, reports the full set, then follows the watch until the server says the
version is gone (410) or the stream ends; `watch_forever` repeats that with back-off.
Consumers receive a `Snapshot` after every list (so they can diff and notice deletions
missed while disconnected) and each event afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vkpy.aio import backoff
from vkpy.errors import KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kube.client import Kube

logger = logging.getLogger(__name__)

WATCH_SECONDS = 300  # server-side timeout of one watch request
READ_TIMEOUT = WATCH_SECONDS + 60  # client-side: the server must have spoken by then


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


@dataclass(frozen=True)
class Snapshot:
    """Every object that exists, from a fresh list."""

    items: tuple[JSON, ...]


@dataclass(frozen=True)
class Event:
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: JSON


Change = Snapshot | Event


async def watch_once(
    kube: Kube, path: str, query: Mapping[str, Any], resource_version: str
) -> AsyncIterator[tuple[Event | None, str]]:
    """Events of one watch request with the resourceVersion after each; bookmarks give
    (None, version). Raises Gone on 410."""
    params = {
        **query,
        "watch": True,
        "resourceVersion": resource_version,
        "allowWatchBookmarks": True,
        "timeoutSeconds": WATCH_SECONDS,
    }
    async for raw in kube.stream(path, query=params, read_timeout=READ_TIMEOUT):
        kind, obj = raw.get("type"), raw.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", "resource version too old"))
            raise KubeApiError(f"watch {path}: {obj.get('message')}", status=obj.get("code"))
        version = obj.get("metadata", {}).get("resourceVersion", resource_version)
        if kind == "BOOKMARK":
            yield None, version
        elif kind in ("ADDED", "MODIFIED", "DELETED"):
            yield Event(kind, obj), version


async def list_and_watch(kube: Kube, path: str, query: Mapping[str, Any]) -> AsyncIterator[Change]:
    """A snapshot, then events, across watch reconnects, until 410 or an error."""
    listing = await kube.get(path, **query)
    version = listing["metadata"]["resourceVersion"]
    yield Snapshot(tuple(listing.get("items") or ()))
    while True:
        try:
            async for event, seen in watch_once(kube, path, query, version):
                version = seen  # a reconnect resumes from the last version seen
                if event is not None:
                    yield event
        except Gone:
            logger.info("watch of %s expired; listing again", path)
            return


async def watch_forever(
    kube: Kube,
    path: str,
    query: Mapping[str, Any],
    handle: Callable[[Change], Awaitable[None]],
    *,
    on_restart: Callable[[], None] | None = None,
) -> None:
    """Keep ``handle`` fed with changes forever; errors restart with back-off."""
    attempt = 0
    while True:
        try:
            async for change in list_and_watch(kube, path, query):
                attempt = 0
                await handle(change)
        except KubeApiError as exc:
            attempt += 1
            delay = backoff(attempt, first=0.5, cap=30.0)
            logger.warning("watch of %s failed (%s); again in %.1fs", path, exc, delay)
            await asyncio.sleep(delay)
        if on_restart is not None:
            on_restart()
