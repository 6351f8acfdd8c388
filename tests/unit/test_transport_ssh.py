"""SshRunner without a server: what it does when the login node cannot be reached."""

import asyncio
import socket
from pathlib import Path

import pytest

from vkpy.config import SshConfig
from vkpy.errors import BackendUnavailable
from vkpy.transport import SshRunner


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp_path: Path, **changes: object) -> SshConfig:
    known = tmp_path / "known_hosts"
    known.write_text("")
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": closed_port(),
        "user": "nobody",
        "key_files": [],
        "use_agent": False,
        "known_hosts": known,
        "reconnect_initial_seconds": 0.4,
        "reconnect_max_seconds": 0.8,
        **changes,
    }
    return SshConfig.model_validate(values)


async def test_unreachable_host_backs_off_between_attempts(tmp_path):
    runner = SshRunner(config(tmp_path))
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        await runner.run(["true"])
    assert runner.connect_attempts == 1
    # Within the back-off, calls fail at once, naming the cause and the wait.
    with pytest.raises(
        BackendUnavailable, match=r"unreachable \(.*cannot connect.*next attempt in"
    ):
        await runner.run(["true"], idempotent=True)
    assert runner.connect_attempts == 1
    await asyncio.sleep(0.45)
    with pytest.raises(BackendUnavailable):
        await runner.connect()
    assert runner.connect_attempts == 2
    # The back-off doubled (0.4 → 0.8, the cap): 0.45 s later it is still waiting.
    await asyncio.sleep(0.45)
    with pytest.raises(BackendUnavailable, match="next attempt in"):
        await runner.connect()
    assert runner.connect_attempts == 2
    assert runner.connections_opened == 0
    assert runner.calls["true"] == 2


async def test_missing_known_hosts_refuses_to_connect(tmp_path):
    runner = SshRunner(config(tmp_path, known_hosts=tmp_path / "absent"))
    with pytest.raises(BackendUnavailable, match="does not exist; refusing to connect"):
        await runner.connect()


def test_channels_are_shared_between_commands_sftp_and_log_streams():
    with pytest.raises(ValueError, match="max_log_streams must leave"):
        SshConfig(host="h", user="u", max_sessions=4, max_log_streams=3)
