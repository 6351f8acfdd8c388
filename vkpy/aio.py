"""The asyncio patterns vkpy's long-running parts share.

- `backoff`: the one doubling back-off, each caller with its own first delay and cap;
- `guard`: runs a background task, logs its failure, never swallows its cancellation;
- `finish`: waits for a cleanup to end even when the waiter is cancelled meanwhile;
- `supervise`: runs root loops until a stop or the first failure, then stops the rest;
- `Workers`: one ordered worker per key. A mark while its worker runs makes it run once
  more, never twice at a time; timers mark a key later (a retry, a deadline, a back-off's
  end).
- `Batcher`: calls that arrive together (within a window, or while the previous batch
  is in flight) go out as one batch; each caller gets its own answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Item = TypeVar("Item")
Answer = TypeVar("Answer")
T = TypeVar("T")
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
_MAX_DOUBLINGS = 62  # past any cap, and small enough for a float


def backoff(attempt: int, *, first: float, cap: float) -> float:
    """Seconds to wait after failure number ``attempt + 1``: ``first``, doubling, at most
    ``cap``."""
    return min(first * (1 << min(max(attempt, 0), _MAX_DOUBLINGS)), cap)


async def guard(
    work: Awaitable[None],
    what: str,
    *,
    log: Log | None = logger,
    fatal: bool = False,
    quiet: tuple[type[Exception], ...] = (),
) -> None:
    """Run ``work``; log its failure (``quiet`` errors in one line, others with their
    traceback; nothing with ``log=None``, when the caller logs it). A ``fatal`` task's
    failure is raised on, for its supervisor to act on; others end there."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except quiet as exc:
        if log is not None:
            log.warning("%s failed: %s", what, exc)
        if fatal:
            raise
    except Exception:
        if log is not None:
            log.exception("%s failed%s", what, "; stopping the rest" if fatal else "")
        if fatal:
            raise


async def finish(task: asyncio.Future[T]) -> T:
    """``task``'s result, waiting for its end even when the caller is cancelled
    meanwhile (the cancellation is raised then, and ``task`` is never cancelled): for
    cleanup that must not stop halfway, such as a kill whose caller went away."""
    interrupted = False
    while not task.done():
        try:
            await asyncio.wait({task})  # which never cancels it
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.warning("cleanup failed while its caller was cancelled: %s", exc)
        raise asyncio.CancelledError
    return task.result()


async def supervise(
    loops: dict[str, Coroutine[Any, Any, None]],
    stop: asyncio.Event | None = None,
    *,
    log: Log | None = logger,
) -> None:
    """Run every loop until ``stop`` is set or one of them ends; then cancel the rest and
    raise the failure, if one failed."""
    tasks = [
        asyncio.create_task(guard(c, n, log=log, fatal=True), name=n) for n, c in loops.items()
    ]
    stopper = asyncio.create_task((stop or asyncio.Event()).wait(), name="stop")
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
    for task in done:
        if task is not stopper and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


class Workers(Generic[K]):
    """At most one task per key runs ``work(key)``, again while the key was marked meanwhile.

    ``work`` should handle its own errors; one that escapes is logged (by `guard`) and the
    worker carries on with the next mark. Timers are named per key: setting one replaces
    the timer of that name (or, with ``sooner_only``, only an earlier one takes its place).
    """

    def __init__(
        self,
        work: Callable[[K], Awaitable[None]],
        *,
        name: Callable[[K], str],
        log: Log = logger,
        quiet: tuple[type[Exception], ...] = (),
    ) -> None:
        self._work = work
        self._name = name
        self._log = log
        self._quiet = quiet
        self._tasks: dict[K, asyncio.Task[None]] = {}
        self._dirty: set[K] = set()
        self._timers: dict[tuple[K, str], asyncio.TimerHandle] = {}

    def mark(self, key: K) -> None:
        """Run ``work(key)`` soon: now, or once more after the run under way."""
        self._dirty.add(key)
        task = self._tasks.get(key)
        if task is None or task.done():
            self._tasks[key] = asyncio.create_task(self._run(key), name=self._name(key))

    def busy(self, key: K) -> bool:
        """Whether a worker runs, or is due to run, for ``key``."""
        task = self._tasks.get(key)
        return task is not None and not task.done()

    def idle(self) -> bool:
        return not any(self.busy(key) for key in self._tasks)

    def later(
        self, key: K, delay: float, *, timer: str = "retry", sooner_only: bool = False
    ) -> None:
        """Mark ``key`` in ``delay`` seconds."""
        loop = asyncio.get_running_loop()
        current = self._timers.get((key, timer))
        if current is not None:
            if sooner_only and current.when() <= loop.time() + delay:
                return
            current.cancel()
        self._timers[(key, timer)] = loop.call_later(delay, self._fire, key, timer)

    def timer(self, key: K, timer: str = "retry") -> asyncio.TimerHandle | None:
        return self._timers.get((key, timer))

    def cancel_timers(self, key: K) -> None:
        for slot in [s for s in self._timers if s[0] == key]:
            self._timers.pop(slot).cancel()

    def _fire(self, key: K, timer: str) -> None:
        self._timers.pop((key, timer), None)
        self.mark(key)

    async def _run(self, key: K) -> None:
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                await guard(self._work(key), self._name(key), log=self._log, quiet=self._quiet)
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]

    async def close(self) -> None:
        """Cancel every timer and worker, and wait for the workers to end."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._dirty.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Batcher(Generic[Item, Answer]):
    """``await batcher.call(item)``: items that arrive within ``window`` seconds of the
    first, or while a batch is in flight, go to ``flush`` together (at most ``largest``
    at a time, one batch in flight). ``flush`` answers each item by its position; what
    it raises, every caller of that batch gets."""

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[list[Answer]]],
        *,
        window: float,
        largest: int,
        name: str = "batch",
    ) -> None:
        self._flush = flush
        self._window = window
        self._largest = max(1, largest)
        self._name = name
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def call(self, item: Item) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=self._name)
        return await asyncio.shield(future)

    async def _run(self) -> None:
        await asyncio.sleep(self._window)
        while self._waiting:
            taken = self._waiting[: self._largest]
            del self._waiting[: self._largest]
            live = [(i, f) for i, f in taken if not f.done()]
            if not live:
                continue
            try:
                answers = await self._flush([i for i, _ in live])
            except Exception as exc:  # every caller of the batch gets it
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except asyncio.CancelledError:
                for _, future in [*live, *self._waiting]:
                    future.cancel()
                self._waiting.clear()
                raise
            for (_, future), answer in zip(live, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
