"""What the exec and port-forward handlers need of a SPDY connection: streams the
client opens, each with its headers. `vkpy.kubeletapi.spdy` provides them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol


class PeerStream(Protocol):
    """One stream the client opened."""

    @property
    def id(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Lower-case names, as SPDY carries them."""
        ...

    async def read(self) -> bytes:
        """The next bytes; b"" once the client half-closed or reset the stream."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None:
        """Our half-close (FIN)."""

    def reset(self) -> None:
        """Abort the stream."""


class PeerStreams(Protocol):
    async def accept(self) -> PeerStream | None:
        """The next stream the client opens; None once the connection ended."""
        ...


async def stream_bytes(stream: PeerStream) -> AsyncIterator[bytes]:
    """What the client sends on ``stream``, until it half-closes it."""
    while data := await stream.read():
        yield data
