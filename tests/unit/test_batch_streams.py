"""`JobProcess.close` runs to its end even when its caller is cancelled meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from vkpy.backends.batch.streams import JobProcess


class RunningSession:
    """A command that runs until closed."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()
        self.closed = 0

    async def wait(self) -> int:
        await self.ended.wait()
        return 137

    async def close(self) -> None:
        self.closed += 1
        self.ended.set()


async def test_a_kill_whose_caller_is_cancelled_goes_on_and_a_second_close_waits_for_it():
    session = RunningSession()
    killing, release = asyncio.Event(), asyncio.Event()
    kills = []

    async def kill() -> None:  # over SSH: it takes a while
        killing.set()
        await release.wait()
        kills.append(True)

    process = JobProcess(session, kill=kill)  # type: ignore[arg-type]  # the part used
    closer = asyncio.create_task(process.close())
    await killing.wait()
    closer.cancel()  # the kubelet API's handler, its connection dropped
    again = asyncio.create_task(process.close())
    await asyncio.sleep(0.01)
    assert not closer.done() and not again.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await closer
    await again
    assert kills == [True] and session.closed == 1
