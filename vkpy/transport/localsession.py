"""Interactive commands as local subprocesses (`LocalRunner`), on pipes or on a pty.

On a pty the command leads its own session with the pty as its controlling terminal
(util-linux ``setsid --ctty``: no Python runs between fork and exec), so a resize
(TIOCSWINSZ on the master) reaches it as SIGWINCH, as sshd's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import AsyncIterator, Sequence

from vkpy.errors import BackendUnavailable, PortUnreachable
from vkpy.remote import OutputStream, StreamTunnel, TerminalSize
from vkpy.transport.interactive import eof_byte

CHUNK = 65536
KILL_WAIT_SECONDS = 5.0


class LocalSession:
    """A local subprocess; see `vkpy.transport.interactive.Session`."""

    def __init__(self, process: asyncio.subprocess.Process, master: int | None) -> None:
        self._process = process
        self._master = master  # the pty's master side, or None on pipes
        self._closed = False

    async def output(self, stream: OutputStream) -> AsyncIterator[bytes]:
        if self._master is not None:
            async for chunk in self._pty_output(self._master):
                yield chunk
            return
        reader = self._process.stdout if stream == "stdout" else self._process.stderr
        if reader is None:
            return
        while chunk := await reader.read(CHUNK):
            yield chunk

    async def _pty_output(self, fd: int) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                except OSError as exc:  # EIO: every holder of the terminal is gone
                    if exc.errno == errno.EIO:
                        return
                    raise
                if not chunk:
                    return
                yield chunk
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(fd)

    async def write(self, data: bytes) -> None:
        if self._master is not None:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self._master, view) :]
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                except OSError as exc:
                    raise BackendUnavailable(f"cannot write to the terminal: {exc}") from exc
            return
        stdin = self._process.stdin
        if stdin is None:
            return
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise BackendUnavailable(f"the command's stdin is closed: {exc}") from exc

    async def close_stdin(self) -> None:
        if self._master is not None:
            await self.write(eof_byte())
        elif self._process.stdin is not None:
            self._process.stdin.close()

    async def resize(self, size: TerminalSize) -> None:
        if self._master is not None:
            winsize = struct.pack("HHHH", size.height, size.width, 0, 0)
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, winsize)

    async def signal(self, name: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.Signals[f"SIG{name}"])

    async def wait(self) -> int:
        status = await self._process.wait()
        return 128 - status if status < 0 else status

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._process.returncode is None:
            await self.signal("KILL")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), KILL_WAIT_SECONDS)
        if self._master is not None:
            os.close(self._master)
            self._master = None


async def start_local(
    argv: Sequence[str],
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    terminal: TerminalSize | None,
    env: dict[str, str] | None,
    cwd: str | None,
) -> LocalSession:
    """Start ``argv`` in a session of its own, on pipes or on a new pty."""
    pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    try:
        if terminal is None:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=pipe if stdin else null,
                stdout=pipe if stdout else null,
                stderr=pipe if stderr else null,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
            return LocalSession(process, None)
        master, slave = pty.openpty()
        try:
            winsize = struct.pack("HHHH", terminal.height, terminal.width, 0, 0)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
            process = await asyncio.create_subprocess_exec(
                "setsid", "--ctty", "--wait", *argv,
                stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
            )  # fmt: skip
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return LocalSession(process, master)
    except OSError as exc:
        raise BackendUnavailable(f"cannot start {argv[0]}: {exc}") from exc


async def open_local_tcp(host: str, port: int) -> StreamTunnel:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError as exc:
        raise PortUnreachable(f"nothing accepts connections on {host}:{port}") from exc
    except OSError as exc:
        raise PortUnreachable(f"cannot connect to {host}:{port}: {exc.strerror}") from exc
    return StreamTunnel(reader, writer)
