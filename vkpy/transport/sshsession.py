"""Interactive commands and TCP connections over an SSH connection (`SshRunner`).

A command is an exec channel: with a terminal, a pty request of the size asked for,
and ``window-change`` requests on resize (sshd then signals the command SIGWINCH).
OpenSSH delivers ``signal`` requests to the command's process group. A TCP connection
is a direct-tcpip channel: the login node connects, so the port need only be reachable
from there. asyncssh errors become vkpy's here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncssh

from vkpy.errors import BackendUnavailable, PortUnreachable
from vkpy.remote import OutputStream, TerminalSize
from vkpy.transport.base import signal_status
from vkpy.transport.interactive import eof_byte

CHUNK = 65536
# srun reads a window change and then waits for the next signal; one that comes in
# between is lost, so the nudge and the real size are sent this far apart. The first
# output is held back meanwhile, so what the caller sees first has the right size.
NUDGE_GAP_SECONDS = 0.25
_FAILURES = (asyncssh.Error, OSError, EOFError)


class SshSession:
    """One exec channel; see `vkpy.transport.interactive.Session`."""

    def __init__(
        self, process: Any, target: str, *, tty: bool, release: Callable[[], None]
    ) -> None:
        self._process = process
        self._target = target
        self._tty = tty
        self._release = release
        self._closed = False
        # A window change that comes while srun still launches its step is lost there;
        # the size is set again, with a nudge the pty cannot ignore, once output shows
        # the command runs.
        self._early_size: TerminalSize | None = None
        self._size: TerminalSize | None = None
        self._started = False

    async def output(self, stream: OutputStream) -> AsyncIterator[bytes]:
        reader = self._process.stdout if stream == "stdout" else self._process.stderr
        while True:
            try:
                chunk: bytes = await reader.read(CHUNK)
            except _FAILURES as exc:
                raise BackendUnavailable(f"{self._target}: session broke: {exc}") from exc
            if not chunk:
                return
            if not self._started:
                self._started = True
                await self._replay_size()
            yield chunk

    async def write(self, data: bytes) -> None:
        try:
            self._process.stdin.write(data)
            await self._process.stdin.drain()
        except _FAILURES as exc:
            raise BackendUnavailable(f"{self._target}: cannot write stdin: {exc}") from exc

    async def close_stdin(self) -> None:
        with contextlib.suppress(*_FAILURES):
            if self._tty:  # a pty has no half-close: its line discipline reads ^D as EOF
                self._process.stdin.write(eof_byte())
            else:
                self._process.stdin.write_eof()

    async def resize(self, size: TerminalSize) -> None:
        if self._tty:
            self._size = size
            if not self._started:
                self._early_size = size
            self._set_size(size.width, size.height)

    async def _replay_size(self) -> None:
        size, self._early_size = self._early_size, None
        if size is not None:
            self._set_size(size.width, size.height + 1)
            await asyncio.sleep(NUDGE_GAP_SECONDS)
            latest = self._size or size
            self._set_size(latest.width, latest.height)

    def _set_size(self, width: int, height: int) -> None:
        with contextlib.suppress(*_FAILURES):
            self._process.change_terminal_size(width, height)

    async def signal(self, name: str) -> None:
        with contextlib.suppress(*_FAILURES):
            self._process.send_signal(name)

    async def wait(self) -> int:
        try:
            await self._process.wait_closed()
        except _FAILURES as exc:
            raise BackendUnavailable(f"{self._target}: session broke: {exc}") from exc
        if self._process.exit_signal:
            return signal_status(str(self._process.exit_signal[0]))
        status = self._process.exit_status
        if status is None or status < 0:
            raise BackendUnavailable(f"{self._target}: the session ended without an exit status")
        return int(status)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._process.exit_status is None and not self._process.exit_signal:
                await self.signal("KILL")
            self._process.close()
            with contextlib.suppress(*_FAILURES):
                await asyncio.wait_for(self._process.wait_closed(), 5.0)
        except TimeoutError:
            pass
        finally:
            self._release()


class SshTunnel:
    """A direct-tcpip channel as a `vkpy.remote.Tunnel`."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, limit: int) -> bytes:
        try:
            data: bytes = await self._reader.read(limit)
        except _FAILURES as exc:
            raise BackendUnavailable(f"port-forward connection broke: {exc}") from exc
        return data

    async def write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except _FAILURES as exc:
            raise BackendUnavailable(f"port-forward connection broke: {exc}") from exc

    async def write_eof(self) -> None:
        with contextlib.suppress(*_FAILURES):
            if not self._writer.is_closing():
                self._writer.write_eof()

    async def close(self) -> None:
        with contextlib.suppress(*_FAILURES):
            self._writer.close()
            await self._writer.channel.wait_closed()


async def open_tunnel(connection: Any, target: str, host: str, port: int) -> SshTunnel:
    """A direct-tcpip channel from the SSH server to ``host:port``."""
    try:
        reader, writer = await connection.open_connection(host, port)
    except asyncssh.ChannelOpenError as exc:
        if exc.code == asyncssh.OPEN_CONNECT_FAILED:
            raise PortUnreachable(
                f"nothing accepts connections on {host}:{port} ({exc.reason})"
            ) from exc
        raise BackendUnavailable(f"{target}: cannot open a tunnel: {exc.reason}") from exc
    except _FAILURES as exc:
        raise BackendUnavailable(f"{target}: cannot open a tunnel: {exc}") from exc
    return SshTunnel(reader, writer)
