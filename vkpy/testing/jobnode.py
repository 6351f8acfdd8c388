"""A job backend (Slurm, HTCondor) started on the testbed for a node of its own, so
tests never see each other's jobs, and checked clean on the way out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from vkpy.backends.batch.jobbackend import JobBackend

B = TypeVar("B", bound=JobBackend[Any])


@contextlib.asynccontextmanager
async def started_node(
    backend: B, jobs_left: Callable[[B], Awaitable[list[str]]]
) -> AsyncIterator[B]:
    """Start ``backend``; on the way out delete every pod it still holds and fail if a
    job (``jobs_left``) or a work directory of its node is left behind."""
    await backend.start()
    try:
        yield backend
    finally:
        try:
            for uid in await backend.list():
                await backend.delete(uid, grace_seconds=0)
            left = [*await jobs_left(backend), *await work_directories(backend)]
            if not left:  # the node's own directory goes too, when nothing is in it
                await backend.runner.run(["rmdir", "--", backend.layout.base])
        finally:
            await backend.close()
    if left:
        raise AssertionError(f"node {backend.node} left behind: {left}")


async def work_directories(backend: JobBackend[Any]) -> list[str]:
    listing = await backend.runner.run(
        ["find", backend.layout.base, "-mindepth", "1", "-maxdepth", "1", "-name", "[!.]*"]
    )
    return [f"work directory {line}" for line in listing.text.split()]
