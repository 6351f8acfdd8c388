"""A Podman API service of the backend's own, for when no socket is configured.

``podman system service --time=0 unix://<private socket>`` runs as the backend's child,
with ``CONTAINERS_CONF`` from the configuration. Containers do not depend on it (each
has its own conmon), so stopping the service leaves every pod running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from vkpy.errors import BackendUnavailable, ConfigError

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0


class PodmanService:
    def __init__(self, *, containers_conf: Path | None, ready_timeout: float = 30.0) -> None:
        self.containers_conf = containers_conf
        self.ready_timeout = ready_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._directory: Path | None = None

    async def start(self) -> str:
        """Start the service; returns its socket path once the socket exists."""
        podman = shutil.which("podman")
        if podman is None:
            raise ConfigError("backend.socket is unset and podman is not on PATH")
        self._directory = Path(tempfile.mkdtemp(prefix="vkpy-podman-"))
        socket = self._directory / "podman.sock"
        log = self._directory / "service.log"
        env = dict(os.environ)
        if self.containers_conf is not None:
            env["CONTAINERS_CONF"] = str(self.containers_conf)
        with log.open("wb") as output:
            self._process = await asyncio.create_subprocess_exec(
                podman,
                "system",
                "service",
                "--time=0",
                f"unix://{socket}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=env,
            )
        logger.info("started podman system service (pid %d) on %s", self._process.pid, socket)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while not socket.exists():
            if self._process.returncode is not None or loop.time() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                await self.stop()
                raise BackendUnavailable(f"podman system service did not come up: {tail}")
            await asyncio.sleep(0.05)
        return str(socket)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                logger.warning("podman system service ignored SIGTERM; killing it")
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            logger.info("stopped podman system service (pid %d)", process.pid)
        directory, self._directory = self._directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
