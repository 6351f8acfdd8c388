"""Waiting in tests: poll a probe until its value is good enough, or fail saying what was
awaited and the last value seen (a bare "timed out" says nothing about why).

`eventually` is for asyncio tests (the probe may be sync or async), `eventually_sync` for
the testbed's blocking start-up code, and `listed` waits on a backend's ``list()`` for one
pod's record. Every wait in the tests and the testbed goes through these three.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from vkpy.backend import Backend, PodRun

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """What a test waited for did not come in time."""


def _failure(what: str, timeout: float, last: object) -> WaitTimeout:
    return WaitTimeout(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")


async def eventually(
    probe: Callable[[], Awaitable[T] | T],
    *,
    what: str = "the condition",
    timeout: float = 30.0,
    interval: float = 0.2,
    until: Callable[[T], object] = bool,
) -> T:
    """Call ``probe`` until ``until`` holds for its value (by default: until it is truthy);
    return that value, or raise `WaitTimeout` naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        last = cast(T, await value if inspect.isawaitable(value) else value)
        if until(last):
            return last
        if time.monotonic() > deadline:
            raise _failure(what, timeout, last)
        await asyncio.sleep(interval)


def eventually_sync(
    probe: Callable[[], T],
    *,
    what: str = "the condition",
    timeout: float = 30.0,
    interval: float = 0.1,
    until: Callable[[T], object] = bool,
) -> T:
    """`eventually` for code that blocks (the testbed starting its daemons)."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if until(last):
            return last
        if time.monotonic() > deadline:
            raise _failure(what, timeout, last)
        time.sleep(interval)


async def listed(
    backend: Backend,
    uid: str,
    until: Callable[[PodRun | None], object],
    what: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
) -> PodRun | None:
    """Poll ``backend.list()`` until ``until`` holds for the pod's record (None: not listed)."""

    async def record() -> PodRun | None:
        return (await backend.list()).get(uid)

    return await eventually(record, what=what, timeout=timeout, interval=interval, until=until)
