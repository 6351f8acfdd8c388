"""`SizedSession`: a terminal command starts on the caller's first size."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from vkpy.remote import TerminalSize
from vkpy.transport import sized
from vkpy.transport.sized import SizedSession


class Started:
    """A command that ends when closed; records its start size and resizes."""

    def __init__(self, size: TerminalSize) -> None:
        self.size = size
        self.resizes: list[TerminalSize] = []
        self.closed = 0
        self.ended = asyncio.Event()

    async def output(self, stream: str) -> AsyncIterator[bytes]:
        yield f"{self.size.height} {self.size.width}".encode()

    async def resize(self, size: TerminalSize) -> None:
        self.resizes.append(size)

    async def wait(self) -> int:
        await self.ended.wait()
        return 0

    async def close(self) -> None:
        self.closed += 1
        self.ended.set()


class Starter:
    def __init__(self, *, gate: asyncio.Event | None = None) -> None:
        self.sessions: list[Started] = []
        self.gate = gate

    async def __call__(self, size: TerminalSize) -> Started:
        if self.gate is not None:
            await self.gate.wait()
        self.sessions.append(Started(size))
        return self.sessions[-1]


async def first_output(session: SizedSession) -> bytes:
    async for chunk in session.output("stdout"):
        return chunk
    return b""


async def test_the_command_starts_on_the_first_size_given():
    starter = Starter()
    session = SizedSession(starter)  # type: ignore[arg-type]  # the part used
    reading = asyncio.create_task(first_output(session))
    await asyncio.sleep(0.05)
    assert starter.sessions == []  # nothing starts before the size is known
    await session.resize(TerminalSize(90, 30))
    assert await reading == b"30 90"
    await session.resize(TerminalSize(101, 41))
    assert starter.sessions[0].resizes == [TerminalSize(101, 41)]
    await session.close()
    assert starter.sessions[0].closed == 1


async def test_without_a_size_it_starts_on_the_default_after_a_while():
    starter = Starter()
    session = SizedSession(starter, wait=0.05)  # type: ignore[arg-type]
    assert await first_output(session) == f"{sized.DEFAULT.height} {sized.DEFAULT.width}".encode()
    await session.close()


async def held_at_start() -> tuple[asyncio.Event, Starter, SizedSession]:
    """A session given its size, its start held until the event is set."""
    gate = asyncio.Event()
    starter = Starter(gate=gate)
    session = SizedSession(starter)  # type: ignore[arg-type]
    await session.resize(TerminalSize(90, 30))
    await asyncio.sleep(0.01)
    return gate, starter, session


async def test_a_resize_while_starting_reaches_the_command():
    gate, starter, session = await held_at_start()
    await session.resize(TerminalSize(120, 50))  # the start still runs
    gate.set()
    assert await first_output(session) == b"30 90"
    assert starter.sessions[0].resizes == [TerminalSize(120, 50)]
    await session.close()


async def test_closed_before_any_size_nothing_starts():
    starter = Starter()
    session = SizedSession(starter)  # type: ignore[arg-type]
    await session.close()
    await asyncio.sleep(0.01)
    await session.resize(TerminalSize(90, 30))
    assert starter.sessions == []


async def test_closed_while_starting_the_started_command_is_closed():
    gate, starter, session = await held_at_start()
    closing = asyncio.create_task(session.close())
    await asyncio.sleep(0.01)
    assert not closing.done()  # waits for the start rather than leaking its channel
    gate.set()
    await closing
    assert starter.sessions[0].closed == 1
