"""SshRunner against the testbed's real sshd, as its unprivileged login user."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from vkpy.config import SshConfig
from vkpy.errors import BackendUnavailable
from vkpy.testing.contract import HOSTILE_VALUES
from vkpy.testing.testbed import Endpoints
from vkpy.transport import SshRunner


def ssh_config(testbed: Endpoints, **changes: object) -> SshConfig:
    values: dict[str, object] = {
        "host": testbed.ssh.host,
        "port": testbed.ssh.port,
        "user": testbed.ssh.user,
        "key_files": [testbed.ssh.client_key],
        "use_agent": False,
        "known_hosts": testbed.ssh.known_hosts,
        "reconnect_initial_seconds": 0.2,
        **changes,
    }
    return SshConfig.model_validate(values)


@pytest.fixture
async def runner(testbed: Endpoints) -> AsyncIterator[SshRunner]:
    started = SshRunner(ssh_config(testbed))
    try:
        yield started
    finally:
        await started.close()


def drop_connections(runner: SshRunner, port: int) -> list[int]:
    """Kill the sshd processes serving ``runner``'s connections (never the listener,
    never anyone else's session): the connections break as in a network failure."""
    pids: set[int] = set()
    for local in runner.local_ports():
        out = subprocess.run(
            ["ss", "-Htnp", "state", "established", f"( sport = :{port} and dport = :{local} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pids.update(int(p) for p in re.findall(r"pid=(\d+)", out))
    assert pids, "no sshd process found for the runner's connection"
    for pid in pids:
        subprocess.run(["kill", "-TERM", str(pid)], check=False)
    return sorted(pids)


async def remote_processes(runner: SshRunner, marker: str) -> str:
    listing = await runner.run(["ps", "-u", runner.config.user, "-o", "args="])
    return "\n".join(line for line in listing.text.splitlines() if marker in line)


async def test_argv_reaches_the_remote_program_byte_for_byte(runner: SshRunner) -> None:
    words = [*HOSTILE_VALUES, "-n", "--", "*", "~", "$IFS", "'", '"', "!", "#x"]
    done = await runner.run(["printf", "%s\\0", *words])
    assert done.ok, done.describe()
    assert done.stdout.split(b"\0")[:-1] == [w.encode() for w in words]
    echoed = await runner.run(["cat"], stdin=bytes(range(256)))
    assert echoed.stdout == bytes(range(256))
    failed = await runner.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert (failed.status, failed.stderr) == (3, b"oops\n")
    assert runner.connections_opened == 1


async def test_sftp_stages_files_with_exact_modes(runner: SshRunner) -> None:
    base = f"/tmp/vkpy-sftp-{uuid.uuid4().hex}"
    try:
        await runner.mkdir(f"{base}/a/b", mode=0o700)
        await runner.put(f"{base}/a/b/secret", b"s3cret\x00\xff", mode=0o600)
        await runner.put(f"{base}/a/b/secret", b"again", mode=0o600)
        await runner.put(f"{base}/a/plain", b"x", mode=0o644)
        modes = await runner.run(
            ["stat", "-c", "%a %n", f"{base}/a/b", f"{base}/a/b/secret", f"{base}/a/plain"]
        )
        assert modes.text.split("\n")[:3] == [
            f"700 {base}/a/b",
            f"600 {base}/a/b/secret",
            f"644 {base}/a/plain",
        ]
        assert await runner.get(f"{base}/a/b/secret") == b"again"
        assert await runner.get(f"{base}/missing") is None
    finally:
        await runner.run(["rm", "-rf", "--", base])


async def test_an_unknown_host_key_refuses_to_connect(testbed: Endpoints, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    runner = SshRunner(ssh_config(testbed, known_hosts=known))
    with pytest.raises(BackendUnavailable, match=r"is not in .*accept_new_host_keys"):
        await runner.run(["true"])
    assert runner.connections_opened == 0

    trusting = SshRunner(ssh_config(testbed, known_hosts=known, accept_new_host_keys=True))
    try:
        assert (await trusting.run(["true"])).ok
    finally:
        await trusting.close()
    recorded = known.read_text().split()
    assert recorded[0] == f"[{testbed.ssh.host}]:{testbed.ssh.port}"
    assert recorded[1:] == testbed.ssh.known_hosts.read_text().split()[1:3]


async def test_a_changed_host_key_refuses_even_when_trusting(
    testbed: Endpoints, tmp_path: Path
) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{testbed.ssh.host}]:{testbed.ssh.port} {impostor}")
    runner = SshRunner(ssh_config(testbed, known_hosts=known, accept_new_host_keys=True))
    with pytest.raises(BackendUnavailable, match="differs from the one"):
        await runner.connect()
    assert known.read_text().split()[2] == impostor.split()[1]


async def test_a_wrong_client_key_fails_authentication(testbed: Endpoints, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    key.chmod(0o600)
    runner = SshRunner(ssh_config(testbed, key_files=[key]))
    with pytest.raises(BackendUnavailable, match="authentication as vkpyuser failed"):
        await runner.connect()


async def test_a_command_past_its_timeout_is_killed_on_the_login_node(runner: SshRunner) -> None:
    marker = f"vkpy-timeout-{uuid.uuid4().hex}"
    with pytest.raises(BackendUnavailable, match="did not finish"):
        await runner.run(["sh", "-c", "sleep 30", marker], timeout=0.5)
    await asyncio.sleep(0.5)
    assert await remote_processes(runner, marker) == ""


async def test_closing_a_stream_stops_the_remote_command(runner: SshRunner) -> None:
    marker = f"vkpy-stream-{uuid.uuid4().hex}"
    argv = ["sh", "-c", "while :; do echo tick; sleep 0.2; done", marker]
    async with runner.stream(argv) as stream:
        async for chunk in stream.chunks():
            assert chunk.startswith(b"tick")
            break
    await asyncio.sleep(0.5)
    assert await remote_processes(runner, marker) == ""


async def test_commands_share_one_connection_within_its_channel_limit(testbed: Endpoints) -> None:
    runner = SshRunner(ssh_config(testbed, max_sessions=4, max_log_streams=1))
    try:
        began = time.monotonic()
        results = await asyncio.gather(
            *(runner.run(["sh", "-c", "sleep 0.2; echo $0", str(i)]) for i in range(12))
        )
        elapsed = time.monotonic() - began
    finally:
        await runner.close()
    assert [r.text.strip() for r in results] == [str(i) for i in range(12)]
    assert runner.connections_opened == 1
    assert elapsed >= 0.2 * 12 / 2  # two command channels (one SFTP, one log stream)


async def test_a_pool_spreads_commands_over_its_connections(testbed: Endpoints) -> None:
    runner = SshRunner(ssh_config(testbed, pool_size=2))
    try:
        await asyncio.gather(*(runner.run(["true"]) for _ in range(6)))
        assert runner.connections_opened == 2
        assert len(runner.local_ports()) == 2
    finally:
        await runner.close()


async def test_a_broken_connection_is_reopened(runner: SshRunner, testbed: Endpoints) -> None:
    assert (await runner.run(["true"])).ok
    drop_connections(runner, testbed.ssh.port)
    await asyncio.sleep(0.5)
    # Idempotent commands run on a new connection; the caller never notices.
    assert (await runner.run(["echo", "again"], idempotent=True)).text == "again\n"
    assert runner.connections_opened == 2
    assert runner.connect_attempts == 2
