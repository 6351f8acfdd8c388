"""The node Lease is renewed on a fixed cadence, whatever each renewal costs."""

import asyncio
import contextlib
import itertools

from vkpy.lease import LeaseKeeper


class SlowApi:
    """Answers a Lease's GET and PUT, each PUT taking ``put_seconds``; notes when each
    PUT began, in the loop's time."""

    def __init__(self, put_seconds: float, count: int) -> None:
        self.put_seconds = put_seconds
        self.began: list[float] = []
        self.count = count
        self.enough = asyncio.Event()

    async def get(self, path: str) -> dict:
        return {"metadata": {"name": "n"}, "spec": {}}

    async def request(self, method: str, path: str, body: dict) -> dict:
        self.began.append(asyncio.get_running_loop().time())
        if len(self.began) >= self.count:
            self.enough.set()
        await asyncio.sleep(self.put_seconds)
        return body


async def renewals(put_seconds: float, period: float, count: int) -> list[float]:
    api = SlowApi(put_seconds, count)
    keeper = LeaseKeeper(api, "n", "uid", duration=40, renew_seconds=period)  # type: ignore[arg-type]
    task = asyncio.create_task(keeper.run())
    await asyncio.wait_for(api.enough.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return [later - earlier for earlier, later in itertools.pairwise(api.began)]


async def test_a_slow_renewal_does_not_delay_the_next():
    gaps = await renewals(put_seconds=0.3, period=0.5, count=4)
    assert all(abs(gap - 0.5) < 0.12 for gap in gaps), gaps  # sliding, they were 0.8


async def test_a_renewal_longer_than_the_period_is_followed_at_once_without_a_burst():
    gaps = await renewals(put_seconds=0.7, period=0.5, count=4)
    assert all(abs(gap - 0.7) < 0.12 for gap in gaps), gaps
