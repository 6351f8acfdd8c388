"""The queue's clock, and the batcher that groups submissions."""

from __future__ import annotations

import asyncio

import pytest

from vkpy.aio import Batcher
from vkpy.backends.batch.clock import QueueClock


class Time:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_queue_is_read_first_then_every_interval():
    time = Time()
    clock = QueueClock(interval=30, floor=10, now=time)
    assert clock.due()
    clock.began()
    time.now = 29
    assert not clock.due()
    time.now = 30
    assert clock.due()


def test_asking_reads_sooner_but_never_within_the_floor():
    time = Time()
    clock = QueueClock(interval=30, floor=10, now=time)
    clock.began()
    clock.ask("job 7 has not begun")
    for moment in (0, 5, 9.9):
        time.now = moment
        assert not clock.due()
    time.now = 10
    assert clock.due()
    clock.began()
    assert clock.asked == ""
    time.now = 21
    assert not clock.due()  # the ask was answered: back to the interval


def test_the_floor_wins_over_a_shorter_interval():
    time = Time()
    clock = QueueClock(interval=2, floor=10, now=time)
    clock.began()
    time.now = 9
    assert not clock.due()
    time.now = 10
    assert clock.due()


async def test_calls_that_arrive_together_go_out_as_one_batch():
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.05)
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(flush, window=0.02, largest=3)
    first = await asyncio.gather(*(batcher.call(i) for i in range(5)))
    assert first == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2], [3, 4]]


async def test_calls_during_a_flight_go_in_the_next_batch():
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def flush(items: list[str]) -> list[str]:
        batches.append(items)
        await release.wait()
        return items

    batcher: Batcher[str, str] = Batcher(flush, window=0, largest=100)
    first = asyncio.ensure_future(batcher.call("a"))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(batcher.call(x)) for x in "bc"]
    await asyncio.sleep(0.01)
    release.set()
    assert await first == "a" and [await t for t in later] == ["b", "c"]
    assert batches == [["a"], ["b", "c"]]


async def test_a_failed_batch_fails_each_of_its_callers():
    async def flush(items: list[int]) -> list[int]:
        raise RuntimeError("connection lost")

    batcher: Batcher[int, int] = Batcher(flush, window=0, largest=10)
    results = await asyncio.gather(batcher.call(1), batcher.call(2), return_exceptions=True)
    assert [str(r) for r in results] == ["connection lost", "connection lost"]
    with pytest.raises(RuntimeError):
        await batcher.call(3)
