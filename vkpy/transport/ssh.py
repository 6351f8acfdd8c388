"""`SshRunner`: commands on a login node over persistent, multiplexed SSH connections.

- A pool of ``pool_size`` connections (default one), opened on first use and kept;
  every command is a channel on one of them, at most ``max_sessions`` at once per
  connection (one is the SFTP session, ``max_log_streams`` are kept for log streams).
- Keys from files or the ssh-agent; the host key checked against known_hosts
  (`HostKeyPolicy`); keepalives notice a dead connection, which is reopened on next
  use, with a back-off between failed attempts (calls in between fail at once).
- argv is turned into the remote command line by `command_line`: each element quoted.
- asyncssh and socket errors become `BackendUnavailable` here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from vkpy.aio import backoff
from vkpy.errors import BackendError, BackendUnavailable
from vkpy.metrics import RUNNER_COMMANDS, SSH_CONNECTIONS
from vkpy.remote import TerminalSize
from vkpy.transport.base import Completed, command_line, signal_status
from vkpy.transport.config import SshConfig
from vkpy.transport.hostkeys import HostKeyPolicy
from vkpy.transport.sshsession import SshSession, SshTunnel, open_tunnel

logger = logging.getLogger(__name__)

CHUNK = 65536
# What a broken or unreachable connection raises; ChannelOpenError on a live
# connection (the server refused one more channel) is among them, and tells apart.
_FAILURES = (asyncssh.Error, OSError, EOFError)


class _Broken(Exception):
    """The connection broke under a command (internal: becomes BackendUnavailable)."""


class _Client(asyncssh.SSHClient):
    def __init__(self, policy: HostKeyPolicy) -> None:
        self.policy = policy

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        return self.policy.decide(host, addr, port, key)


@dataclass
class _Slot:
    """One connection of the pool and what is open on it."""

    index: int
    commands: asyncio.Semaphore
    streams: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connection: Any = None
    sftp: Any = None
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""

    def alive(self) -> bool:
        return self.connection is not None and not self.connection.is_closed()


class SshStream:
    """A remote command whose stdout is read as it comes."""

    def __init__(self, process: Any, target: str) -> None:
        self._process = process
        self._target = target

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk: bytes = await self._process.stdout.read(CHUNK)
            except _FAILURES as exc:
                raise BackendUnavailable(f"{self._target}: stream broke: {exc}") from exc
            if not chunk:
                return
            yield chunk


class SshRunner:
    """Runs commands on a login node; see the module docstring."""

    def __init__(self, config: SshConfig, *, timeout: float = 60.0) -> None:
        self.config = config
        self.timeout = timeout
        self.target = f"ssh://{config.user}@{config.host}:{config.port}"
        self.calls: Counter[str] = Counter()
        self.connections_opened = 0
        self.connect_attempts = 0
        self.policy = HostKeyPolicy(config.known_hosts, accept_new=config.accept_new_host_keys)
        commands = config.max_sessions - 1 - config.max_log_streams
        self._slots = [
            _Slot(i, asyncio.Semaphore(commands), asyncio.Semaphore(config.max_log_streams))
            for i in range(config.pool_size)
        ]
        self._next = 0

    # ------------------------------------------------------------ connections

    def _pick(self) -> _Slot:
        """The next connection, round robin; a live one before a dead one."""
        count = len(self._slots)
        for offset in range(count):
            slot = self._slots[(self._next + offset) % count]
            if slot.alive():
                self._next = (slot.index + 1) % count
                return slot
        slot = self._slots[self._next]
        self._next = (self._next + 1) % count
        return slot

    async def connect(self) -> None:
        await self._connection(self._pick())

    async def _connection(self, slot: _Slot) -> Any:
        if slot.alive():
            return slot.connection
        async with slot.lock:
            if slot.alive():
                return slot.connection
            wait = slot.retry_at - time.monotonic()
            if wait > 0:
                raise BackendUnavailable(
                    f"{self.target} unreachable ({slot.last_error}); next attempt in {wait:.1f}s"
                )
            try:
                slot.connection = await self._open()
            except BackendUnavailable as exc:
                slot.failures += 1
                slot.last_error = str(exc)
                delay = backoff(
                    slot.failures - 1,
                    first=self.config.reconnect_initial_seconds,
                    cap=self.config.reconnect_max_seconds,
                )
                slot.retry_at = time.monotonic() + delay
                logger.warning(
                    "%s: connection %d failed (%s); next attempt in %.1fs",
                    self.target,
                    slot.index,
                    exc,
                    delay,
                )
                raise
            slot.sftp = None
            if slot.failures:
                logger.info("%s: connection %d reopened", self.target, slot.index)
            slot.failures, slot.retry_at, slot.last_error = 0, 0.0, ""
            return slot.connection

    async def _open(self) -> Any:
        config = self.config
        self.connect_attempts += 1
        known_hosts = await asyncio.to_thread(self.policy.prepare)
        if known_hosts is None:
            raise BackendUnavailable(
                f"{self.target}: known_hosts file {self.policy.path} does not exist; "
                "refusing to connect to a host whose key cannot be checked"
            )
        self.policy.refusal = ""
        keys = [str(path.expanduser()) for path in config.key_files]
        started = time.monotonic()
        try:
            connection = await asyncssh.connect(
                config.host,
                port=config.port,
                username=config.user,
                client_keys=keys or (),
                agent_path=os.environ.get("SSH_AUTH_SOCK") if config.use_agent else None,
                known_hosts=known_hosts,
                client_factory=lambda: _Client(self.policy),
                preferred_auth="publickey",
                keepalive_interval=config.keepalive_seconds,
                keepalive_count_max=config.keepalive_count_max,
                connect_timeout=config.connect_timeout_seconds,
                config=None,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            reason = self.policy.refusal or str(exc)
            raise BackendUnavailable(f"{self.target}: {reason}") from exc
        except asyncssh.PermissionDenied as exc:
            raise BackendUnavailable(
                f"{self.target}: authentication as {config.user} failed: {exc.reason}"
            ) from exc
        except (*_FAILURES, TimeoutError) as exc:
            raise BackendUnavailable(f"{self.target}: cannot connect: {_why(exc)}") from exc
        self.connections_opened += 1
        SSH_CONNECTIONS.inc()
        logger.info(
            "%s: connected in %.0f ms (connection %d opened so far)",
            self.target,
            (time.monotonic() - started) * 1000,
            self.connections_opened,
        )
        return connection

    def local_ports(self) -> list[int]:
        """The local TCP ports of the open connections (to find them in ``ss`` output)."""
        ports = []
        for slot in self._slots:
            if slot.alive():
                sockname = slot.connection.get_extra_info("sockname")
                if sockname:
                    ports.append(int(sockname[1]))
        return ports

    def _drop(self, slot: _Slot, connection: Any) -> None:
        if slot.connection is connection:
            slot.connection, slot.sftp = None, None
        with contextlib.suppress(*_FAILURES):
            connection.close()

    async def close(self) -> None:
        for slot in self._slots:
            connection = slot.connection
            slot.connection, slot.sftp = None, None
            if connection is not None:
                connection.close()
                with contextlib.suppress(*_FAILURES):
                    await connection.wait_closed()

    # ------------------------------------------------------------ commands

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> Completed:
        command = command_line(argv)
        self.calls[argv[0]] += 1
        RUNNER_COMMANDS.labels(command=argv[0]).inc()
        attempts = 2 if idempotent else 1
        for attempt in range(1, attempts + 1):
            slot = self._pick()
            connection = await self._connection(slot)
            try:
                async with slot.commands:
                    return await self._exec(connection, argv, command, stdin, timeout)
            except _Broken as exc:
                self._drop(slot, connection)
                if attempt == attempts:
                    raise BackendUnavailable(
                        f"{self.target}: connection lost during {argv[0]}: {exc}"
                    ) from exc
                logger.info("%s: connection lost; running %s again", self.target, argv[0])
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _exec(
        self,
        connection: Any,
        argv: Sequence[str],
        command: str,
        stdin: bytes | None,
        timeout: float | None,
    ) -> Completed:
        limit = timeout or self.timeout
        try:
            if stdin:
                process = await connection.create_process(command, input=stdin, encoding=None)
            else:
                process = await connection.create_process(
                    command, stdin=asyncssh.DEVNULL, encoding=None
                )
        except _FAILURES as exc:
            if connection.is_closed():
                raise _Broken(_why(exc)) from exc
            raise BackendUnavailable(f"{self.target}: cannot run {argv[0]}: {_why(exc)}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), limit)
        except TimeoutError as exc:
            with contextlib.suppress(*_FAILURES):
                process.send_signal("KILL")
            process.close()
            raise BackendUnavailable(
                f"{self.target}: {argv[0]} did not finish within {limit:g}s"
            ) from exc
        except _FAILURES as exc:
            process.close()
            raise _Broken(_why(exc)) from exc
        status = _status(process)
        if status is None:
            if connection.is_closed():
                raise _Broken("the channel closed without an exit status")
            status = 255
        return Completed(tuple(argv), status, stdout or b"", stderr or b"")

    @contextlib.asynccontextmanager
    async def stream(self, argv: Sequence[str]) -> AsyncIterator[SshStream]:
        command = command_line(argv)
        self.calls["stream"] += 1
        slot = self._pick()
        connection = await self._connection(slot)
        if slot.streams.locked():
            raise BackendUnavailable(
                f"{self.target}: {self.config.max_log_streams} log streams are open already"
            )
        async with slot.streams:
            try:
                process = await connection.create_process(
                    command, stdin=asyncssh.DEVNULL, stderr=asyncssh.DEVNULL, encoding=None
                )
            except _FAILURES as exc:
                if connection.is_closed():
                    self._drop(slot, connection)
                raise BackendUnavailable(f"{self.target}: cannot stream: {_why(exc)}") from exc
            try:
                yield SshStream(process, self.target)
            finally:
                # OpenSSH delivers the signal to the command's whole process group.
                with contextlib.suppress(*_FAILURES):
                    process.send_signal("TERM")
                process.close()

    # ------------------------------------------------------------ interactive

    async def start(
        self,
        argv: Sequence[str],
        *,
        stdin: bool,
        stdout: bool = True,
        stderr: bool = True,
        terminal: TerminalSize | None = None,
    ) -> SshSession:
        """An exec channel for ``argv`` (`vkpy.transport.interactive`); it takes one of
        the channels kept for streams until it is closed."""
        command = command_line(argv)
        self.calls["start"] += 1
        slot = self._pick()
        connection = await self._connection(slot)
        if slot.streams.locked():
            raise BackendUnavailable(
                f"{self.target}: {self.config.max_log_streams} streams are open already"
            )
        await slot.streams.acquire()
        pty: dict[str, Any] = {}
        if terminal is not None:
            pty = {"term_type": "xterm", "term_size": (terminal.width, terminal.height)}
        try:
            process = await connection.create_process(
                command,
                stdin=asyncssh.PIPE if stdin else asyncssh.DEVNULL,
                stdout=asyncssh.PIPE if stdout else asyncssh.DEVNULL,
                stderr=asyncssh.PIPE if stderr and terminal is None else asyncssh.DEVNULL,
                encoding=None,
                **pty,
            )
        except _FAILURES as exc:
            slot.streams.release()
            if connection.is_closed():
                self._drop(slot, connection)
            raise BackendUnavailable(f"{self.target}: cannot start {argv[0]}: {_why(exc)}") from exc
        except asyncio.CancelledError:
            slot.streams.release()  # else the slot's stream is gone for good
            raise
        return SshSession(
            process, self.target, tty=terminal is not None, release=slot.streams.release
        )

    async def open_tcp(self, host: str, port: int) -> SshTunnel:
        self.calls["tcp"] += 1
        slot = self._pick()
        connection = await self._connection(slot)
        return await open_tunnel(connection, self.target, host, port)

    # ------------------------------------------------------------ files (SFTP)

    async def _sftp(self) -> tuple[_Slot, Any, Any]:
        slot = self._pick()
        connection = await self._connection(slot)
        if slot.sftp is None:
            try:
                slot.sftp = await connection.start_sftp_client()
            except _FAILURES as exc:
                if connection.is_closed():
                    self._drop(slot, connection)
                raise BackendUnavailable(f"{self.target}: cannot start SFTP: {_why(exc)}") from exc
        return slot, connection, slot.sftp

    def _sftp_error(self, slot: _Slot, connection: Any, what: str, exc: Exception) -> BackendError:
        if connection.is_closed() or isinstance(exc, asyncssh.SFTPConnectionLost):
            self._drop(slot, connection)
            return BackendUnavailable(f"{self.target}: connection lost during {what}: {exc}")
        return BackendError(f"{self.target}: {what}: {_why(exc)}")

    async def mkdir(self, path: str, *, mode: int) -> None:
        self.calls["mkdir"] += 1
        slot, connection, sftp = await self._sftp()
        try:
            await sftp.makedirs(path, attrs=asyncssh.SFTPAttrs(permissions=mode), exist_ok=True)
            await sftp.chmod(path, mode)  # the server's umask may have narrowed it, or widened
        except _FAILURES as exc:
            raise self._sftp_error(slot, connection, f"mkdir {path}", exc) from exc

    async def put(self, path: str, data: bytes, *, mode: int) -> None:
        self.calls["put"] += 1
        slot, connection, sftp = await self._sftp()
        try:
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            async with sftp.open(path, "wb", attrs=attrs) as remote:
                await remote.chmod(mode)  # before the data: an old file may be wider
                await remote.write(data)
        except _FAILURES as exc:
            raise self._sftp_error(slot, connection, f"write {path}", exc) from exc

    async def get(self, path: str) -> bytes | None:
        self.calls["get"] += 1
        slot, connection, sftp = await self._sftp()
        try:
            async with sftp.open(path, "rb") as remote:
                data: bytes = await remote.read()
                return data
        except asyncssh.SFTPNoSuchFile:
            return None
        except _FAILURES as exc:
            raise self._sftp_error(slot, connection, f"read {path}", exc) from exc


def _status(process: Any) -> int | None:
    """The exit status as a shell reports it: 128+N for a command killed by signal N."""
    if process.exit_signal:
        return signal_status(str(process.exit_signal[0]))
    if process.exit_status is not None and process.exit_status >= 0:
        return int(process.exit_status)
    return None


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.strip()
