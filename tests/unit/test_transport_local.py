import asyncio
import os
import stat
import subprocess
import time

import pytest

from vkpy.errors import BackendError, BackendUnavailable
from vkpy.testing.contract import HOSTILE_VALUES
from vkpy.transport import CommandFailed, Completed, LocalRunner, command_line
from vkpy.transport.base import signal_status


def test_command_line_is_one_literal_word_per_element():
    words = [*HOSTILE_VALUES, "-n", "--", "'", '"', "\\", "*", "~", "$IFS"]
    line = command_line(["printf", "%s\\0", *words])
    out = subprocess.run(["sh", "-c", line], capture_output=True, check=True).stdout
    assert out.split(b"\0")[:-1] == [w.encode() for w in words]
    bash = subprocess.run(["bash", "-c", line], capture_output=True, check=True).stdout
    assert bash == out


@pytest.mark.parametrize("argv", [[], ["echo", "a\0b"]])
def test_command_line_refuses_what_no_shell_can_carry(argv):
    with pytest.raises(ValueError):
        command_line(argv)


def test_completed():
    done = Completed(("sbatch", "x"), 1, b"", b"sbatch: error: Invalid partition\n")
    assert not done.ok
    assert done.describe() == "sbatch exited 1: sbatch: error: Invalid partition"
    with pytest.raises(CommandFailed, match="Invalid partition"):
        done.check()
    assert Completed(("true",), 0, b"ok").check().text == "ok"
    assert "x" * 600 not in Completed(("a",), 2, b"", b"x" * 2000).describe()
    assert signal_status("KILL") == 137 and signal_status("SIGTERM") == 143
    assert signal_status("NOPE") == 255


async def test_run_reports_status_and_output():
    runner = LocalRunner()
    done = await runner.run(["sh", "-c", "printf out; printf err >&2; exit 3"])
    assert (done.status, done.stdout, done.stderr) == (3, b"out", b"err")
    echoed = await runner.run(["cat"], stdin=b"\x00\xffbytes")
    assert echoed.stdout == b"\x00\xffbytes"
    killed = await runner.run(["sh", "-c", "kill -9 $$"])
    assert killed.status == 137
    missing = await runner.run(["no-such-command-vkpy"])
    assert missing.status == 127 and b"command not found" in missing.stderr
    assert runner.calls["sh"] == 2 and runner.calls["cat"] == 1
    assert runner.connections_opened == 0


async def test_a_command_past_its_timeout_is_killed(tmp_path):
    runner = LocalRunner()
    marker = tmp_path / "survived"
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"did not finish within 0\.3s"):
        await runner.run(["sh", "-c", f"sleep 2; touch {marker}"], timeout=0.3)
    assert time.monotonic() - began < 1.5
    await asyncio.sleep(2.2)
    assert not marker.exists(), "the command (or its child) kept running"


async def test_files_get_exactly_their_mode(tmp_path):
    runner = LocalRunner()
    directory = tmp_path / "a" / "b"
    await runner.mkdir(str(directory), mode=0o700)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    secret = directory / "secret"
    secret.write_text("old")
    secret.chmod(0o644)
    await runner.put(str(secret), b"new\x00", mode=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert await runner.get(str(secret)) == b"new\x00"
    assert await runner.get(str(directory / "missing")) is None
    with pytest.raises(BackendError, match="cannot write"):
        await runner.put(str(tmp_path / "no" / "dir" / "f"), b"", mode=0o600)


async def test_stream_yields_output_as_it_comes_and_stops_the_process(tmp_path):
    runner = LocalRunner()
    pid_file = tmp_path / "pid"
    argv = ["sh", "-c", f"echo $$ > {pid_file}; echo one; sleep 0.3; echo two; sleep 60"]
    seen = []
    began = time.monotonic()
    async with runner.stream(argv) as stream:
        async for chunk in stream.chunks():
            seen.append((chunk, time.monotonic() - began))
            if b"two" in chunk:
                break
    assert [c for c, _ in seen] == [b"one\n", b"two\n"]
    assert seen[0][1] < 0.25  # the first line came before the second was written
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
