"""SPDY/3.1 flow control, as far as it interoperates with Kubernetes' peers.

SPDY/3.1 gives every stream and the session a 64 KiB window that the receiver widens
with WINDOW_UPDATE. moby/spdystream, what the apiserver and kubectl speak, does neither:
it never sends WINDOW_UPDATE nor SETTINGS, ignores those it gets, and slows a sender only
by not reading the socket. So windows are kept both ways but the peer's are enforced
only once it shows it uses them (a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE setting), or
from the start with ``strict``. Ours are given back as the application reads, half a
window at a time, so a peer that honours them never stalls.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

INITIAL_WINDOW = 64 * 1024
MAX_WINDOW = (1 << 31) - 1


class Credit:
    """Bytes read but not yet given back to the peer: `consumed` answers the delta to
    send in a WINDOW_UPDATE, or 0 while less than half a window is owed."""

    def __init__(self, window: int = INITIAL_WINDOW) -> None:
        self._threshold = window // 2
        self._owed = 0

    def consumed(self, size: int) -> int:
        self._owed += size
        if self._owed < self._threshold:
            return 0
        owed, self._owed = self._owed, 0
        return owed


class Windowed(Protocol):
    send_window: int

    def check_writable(self) -> None:
        """Raise StreamProtocolError when the stream can no longer send."""


class SendWindows:
    """What the peer lets us send: the session's window; each stream keeps its own."""

    def __init__(self, *, strict: bool = False) -> None:
        self.enforcing = strict
        self.session = INITIAL_WINDOW
        self.stream_initial = INITIAL_WINDOW
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """Let every writer waiting for a window look again."""
        self._changed.set()
        self._changed = asyncio.Event()

    def peer_uses_windows(self) -> None:
        self.enforcing = True
        self.wake()

    def widen_session(self, delta: int) -> None:
        self.session = min(self.session + delta, MAX_WINDOW)
        self.peer_uses_windows()

    def widen(self, stream: Windowed, delta: int) -> None:
        stream.send_window = min(stream.send_window + delta, MAX_WINDOW)
        self.peer_uses_windows()

    def set_initial(self, size: int, streams: list[Windowed]) -> None:
        """The peer's INITIAL_WINDOW_SIZE: open streams' windows move by the change."""
        change = size - self.stream_initial
        self.stream_initial = size
        for stream in streams:
            stream.send_window += change
        self.peer_uses_windows()

    async def take(self, stream: Windowed, want: int) -> int:
        """Up to ``want`` bytes ``stream`` may send now, taken from both windows (at
        least 1), once there is room."""
        while True:
            stream.check_writable()
            allowed = want
            if self.enforcing:
                allowed = min(want, self.session, stream.send_window)
            if allowed > 0:
                self.session -= allowed
                stream.send_window -= allowed
                return allowed
            await self._changed.wait()
