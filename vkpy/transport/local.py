"""`LocalRunner`: commands as local subprocesses, for an agent that runs on a login node."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from vkpy.errors import BackendError, BackendUnavailable
from vkpy.metrics import RUNNER_COMMANDS
from vkpy.remote import StreamTunnel, TerminalSize
from vkpy.transport.base import Completed
from vkpy.transport.localsession import LocalSession, open_local_tcp, start_local

CHUNK = 65536
STOP_SECONDS = 5.0  # a stopped stream's process gets this long to end after SIGTERM


class LocalStream:
    """A local subprocess whose stdout is read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    async def chunks(self) -> AsyncIterator[bytes]:
        stdout = self._process.stdout
        if stdout is None:
            return
        while chunk := await stdout.read(CHUNK):
            yield chunk


class LocalRunner:
    """Runs argv with `asyncio.create_subprocess_exec`: no shell anywhere."""

    target = "local"

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.timeout = timeout
        self.calls: Counter[str] = Counter()
        self.connections_opened = 0

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def _spawn(self, argv: Sequence[str], *, stdin: bool) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise BackendUnavailable(f"cannot start {argv[0]}: {exc}") from exc

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> Completed:
        self.calls[argv[0]] += 1
        RUNNER_COMMANDS.labels(command=argv[0]).inc()
        try:
            process = await self._spawn(argv, stdin=stdin is not None)
        except FileNotFoundError:
            # What a shell reports for a command it cannot find.
            message = f"{argv[0]}: command not found\n".encode()
            return Completed(tuple(argv), 127, b"", message)
        try:
            stdout, stderr = await asyncio.wait_for(
                process.communicate(stdin), timeout or self.timeout
            )
        except TimeoutError as exc:
            _kill(process)
            await process.wait()
            raise BackendUnavailable(
                f"{argv[0]} did not finish within {timeout or self.timeout:g}s"
            ) from exc
        except BaseException:
            _kill(process)
            raise
        status = process.returncode if process.returncode is not None else 255
        if status < 0:  # killed by a signal: report it as a shell would
            status = 128 - status
        return Completed(tuple(argv), status, stdout, stderr)

    async def mkdir(self, path: str, *, mode: int) -> None:
        self.calls["mkdir"] += 1
        await asyncio.to_thread(_mkdir, Path(path), mode)

    async def put(self, path: str, data: bytes, *, mode: int) -> None:
        self.calls["put"] += 1
        await asyncio.to_thread(_write, Path(path), data, mode)

    async def get(self, path: str) -> bytes | None:
        self.calls["get"] += 1
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendError(f"cannot read {path}: {exc.strerror}") from exc

    @contextlib.asynccontextmanager
    async def stream(self, argv: Sequence[str]) -> AsyncIterator[LocalStream]:
        self.calls["stream"] += 1
        try:
            process = await self._spawn(argv, stdin=False)
        except FileNotFoundError as exc:
            raise BackendError(f"{argv[0]}: command not found") from exc
        try:
            yield LocalStream(process)
        finally:
            _kill(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                _kill(process)
                await process.wait()

    async def start(
        self,
        argv: Sequence[str],
        *,
        stdin: bool,
        stdout: bool = True,
        stderr: bool = True,
        terminal: TerminalSize | None = None,
    ) -> LocalSession:
        """``argv`` as an interactive subprocess (`vkpy.transport.interactive`)."""
        self.calls["start"] += 1
        return await start_local(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
            env=self.env,
            cwd=str(self.cwd) if self.cwd is not None else None,
        )

    async def open_tcp(self, host: str, port: int) -> StreamTunnel:
        self.calls["tcp"] += 1
        return await open_local_tcp(host, port)


def _kill(process: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
    """End the process and everything it started (it leads its own session)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


def _mkdir(path: Path, mode: int) -> None:
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        path.chmod(mode)
    except OSError as exc:
        raise BackendError(f"cannot make directory {path}: {exc.strerror}") from exc


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, mode)  # an existing file keeps its old mode otherwise
            file.write(data)
    except OSError as exc:
        raise BackendError(f"cannot write {path}: {exc.strerror}") from exc
