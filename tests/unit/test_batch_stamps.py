"""Stamped log lines: the job script writes them, `logs` reads them back for
``--since`` and ``--timestamps``, with the very commands the backends run remotely."""

import asyncio
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from vkpy.backend import LogOptions
from vkpy.backends.batch import logs, records
from vkpy.backends.batch.logs import Stamps, stamp
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.template import TEMPLATE
from vkpy.backends.slurm.queue import QUEUED_TEST
from vkpy.errors import UnsupportedLogOption
from vkpy.transport import LocalRunner

from .test_slurm_script import (
    FAKE_RUNTIME,
    app,
    pod_spec,
    render,
    run_job,
    settings,
    stage,
)

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
LOG = (
    f"{stamp(T0)} first\n"
    f"{stamp(T0 + timedelta(seconds=1, microseconds=500))} second\n"
    f"{stamp(T0 + timedelta(seconds=3))}  third, indented\n"
    f"{stamp(T0 + timedelta(seconds=4))}+no newline"
).encode()


async def read(argv: list[str]) -> bytes:
    async with LocalRunner().stream(argv) as stream:
        return b"".join([chunk async for chunk in stream.chunks()])


async def follow(argv: list[str], arrivals: list[tuple[bytes, float]]) -> None:
    """Run ``argv``, noting each chunk with the seconds since it started."""
    began = time.monotonic()
    async with LocalRunner().stream(argv) as stream:
        async for chunk in stream.chunks():
            arrivals.append((chunk, time.monotonic() - began))


def test_stamps_are_fixed_width_utc_and_sort_as_text():
    later = datetime(2026, 5, 1, 12, 0, 0, 5, tzinfo=UTC).astimezone(UTC)
    assert stamp(later) == "2026-05-01T12:00:00.000005000Z"
    local = datetime(2026, 5, 1, 14, 0, 0, tzinfo=UTC).astimezone()
    assert stamp(local) == "2026-05-01T14:00:00.000000000Z"
    assert stamp(T0) < stamp(T0 + timedelta(microseconds=1)) < stamp(T0 + timedelta(hours=30))


async def test_a_stamped_log_reads_as_the_container_wrote_it(tmp_path):
    log = tmp_path / "main.0.log"
    log.write_bytes(LOG)
    plain = await read(logs.read_argv(str(log), tail_lines=None, stamps=Stamps()))
    assert plain == b"first\nsecond\n third, indented\nno newline"
    assert await read(logs.read_argv(str(log), tail_lines=2, stamps=Stamps())) == (
        b" third, indented\nno newline"
    )


async def test_since_leaves_out_earlier_lines_and_timestamps_keep_the_stamps(tmp_path):
    log = tmp_path / "main.0.log"
    log.write_bytes(LOG)
    since = Stamps(since=stamp(T0 + timedelta(seconds=1)))
    assert await read(logs.read_argv(str(log), tail_lines=None, stamps=since)) == (
        b"second\n third, indented\nno newline"
    )
    shown = Stamps(since=stamp(T0 + timedelta(seconds=2)), timestamps=True)
    assert (
        await read(logs.read_argv(str(log), tail_lines=None, stamps=shown))
        == (
            f"{stamp(T0 + timedelta(seconds=3))}  third, indented\n"
            f"{stamp(T0 + timedelta(seconds=4))} no newline"
        ).encode()
    )
    late = Stamps(since=stamp(T0 + timedelta(days=1)))
    assert await read(logs.read_argv(str(log), tail_lines=None, stamps=late)) == b""
    # --tail and --since together: the last lines that are late enough.
    assert await read(logs.read_argv(str(log), tail_lines=3, stamps=since)) == (
        b"second\n third, indented\nno newline"
    )


async def test_a_follow_filters_lines_as_they_come(tmp_path):
    log, done = tmp_path / "main.0.log", tmp_path / "main.0.done"
    log.write_bytes(f"{stamp(T0)} old\n".encode())
    stamps = Stamps(since=stamp(T0 + timedelta(seconds=1)), timestamps=True)
    argv = logs.follow_argv(
        str(log), str(done), job_id="", tail_lines=None, queued=QUEUED_TEST, stamps=stamps
    )
    arrivals: list[tuple[bytes, float]] = []
    task = asyncio.create_task(follow(argv, arrivals))
    await asyncio.sleep(1.0)
    with log.open("ab") as file:
        file.write(f"{stamp(T0 + timedelta(seconds=2))}+new, \n".encode())
    await asyncio.sleep(1.5)
    with log.open("ab") as file:
        file.write(f"{stamp(T0 + timedelta(seconds=3))} then more\n".encode())
    done.touch()
    await asyncio.wait_for(task, timeout=5)
    assert b"".join(c for c, _ in arrivals) == (
        f"{stamp(T0 + timedelta(seconds=2))} new, "
        f"{stamp(T0 + timedelta(seconds=3))} then more\n".encode()
    )
    first = next(t for c, t in arrivals if b"new" in c)
    assert 1.0 <= first < 2.5  # streamed as written, not at the end


@pytest.mark.parametrize("perl", [True, False])
def test_an_unfinished_line_shows_before_its_newline(tmp_path, perl):
    functions = re.search(r"^STAMP_PERL=.*?^stamp_lines\(\) \{.*?^\}$", TEMPLATE, re.M | re.S)
    assert functions is not None
    run = 'perl -MTime::HiRes -e "$STAMP_PERL"' if perl else "stamp_lines"
    log = tmp_path / "log"
    stamper = subprocess.Popen(
        ["bash", "-c", f"{functions[0]}\nexport TZ=UTC0\n{run} > {log}"], stdin=subprocess.PIPE
    )
    assert stamper.stdin is not None
    stamper.stdin.write(b"progress: 10%")
    stamper.stdin.flush()
    time.sleep(1.8)
    assert log.read_bytes()[30:] == b"+progress: 10%\n"  # shown while the line goes on
    stamper.stdin.write(b" done\n")
    stamper.stdin.close()
    assert stamper.wait(timeout=5) == 0
    assert [line[30:] for line in log.read_bytes().split(b"\n")] == [
        b"+progress: 10%",
        b"  done",
        b"",
    ]


async def test_options_pick_the_filter_and_unstamped_pods_refuse_times(tmp_path):
    since = T0 + timedelta(seconds=1)
    assert Stamps.of(LogOptions(since=since, timestamps=True)) == Stamps(stamp(since), True)
    assert Stamps.of(LogOptions()) == Stamps()
    layout = Layout(str(tmp_path))
    uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    status = tmp_path / uid / "status"
    status.mkdir(parents=True)
    meta = records.PodMeta("ns", "p", (), ("main",))  # written by a vkpy without stamps
    (status / "_pod").write_text(meta.to_json() + "\n")
    (status / "main").write_text("start 100 0\n")
    runner = LocalRunner()
    old = await logs.log_argv(
        runner, layout, uid, "main", LogOptions(), system="Slurm", queued=QUEUED_TEST
    )
    assert old[0] == "tail"  # the file as it is
    for options in (LogOptions(since=since), LogOptions(timestamps=True)):
        with pytest.raises(UnsupportedLogOption, match="did not stamp"):
            await logs.log_argv(
                runner, layout, uid, "main", options, system="Slurm", queued=QUEUED_TEST
            )
    stamped = records.PodMeta("ns", "p", (), ("main",), stamped_logs=True)
    (status / "_pod").write_text(stamped.to_json() + "\n")
    argv = await logs.log_argv(
        runner, layout, uid, "main", LogOptions(since=since), system="Slurm", queued=QUEUED_TEST
    )
    assert argv[:2] == ["sh", "-c"] and stamp(since) in argv


def test_the_job_script_stamps_every_line_as_it_comes(tmp_path):
    fake_runtime = tmp_path / "fake-runtime"
    fake_runtime.write_text(FAKE_RUNTIME)
    fake_runtime.chmod(0o755)
    pod = pod_spec(app("main", env={"FAKE_SLEEP": "1"}))
    submission = render(
        pod, layout=Layout(str(tmp_path / "base")), settings=settings(fake_runtime), now=0
    )
    began = stamp(datetime.now(UTC))
    assert run_job(submission) == 0
    ended = stamp(datetime.now(UTC))
    meta = next(f for f in submission.files if f.path.endswith("status/_pod"))
    assert records.PodMeta.from_json(meta.data.decode()).stamped_logs
    lines = (stage(submission) / "logs" / "main.0.log").read_text().splitlines()
    assert lines and all(re.match(f"^{STAMP} ARG:|^{STAMP} ENV:", line) for line in lines), lines
    stamps = [line[:30] for line in lines]
    assert began <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= ended


@pytest.mark.parametrize("perl", [True, False])
def test_both_stampers_keep_lines_and_mark_a_missing_newline(perl):
    functions = re.search(r"^STAMP_PERL=.*?^stamp_lines\(\) \{.*?^\}$", TEMPLATE, re.M | re.S)
    assert functions is not None
    run = 'perl -MTime::HiRes -e "$STAMP_PERL"' if perl else "stamp_lines"
    began = time.time()
    done = subprocess.run(
        ["bash", "-c", f"{functions[0]}\nexport TZ=UTC0\n{run}"],
        input=b"one\n  two \\ %s\n\nlast",
        capture_output=True,
        check=True,
    )
    lines = done.stdout.decode().split("\n")
    assert [line[30:] for line in lines] == [" one", "   two \\ %s", " ", "+last", ""]
    for line in lines[:-1]:
        assert re.match(f"^{STAMP}$", line[:30])
        when = datetime.strptime(line[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        assert began - 1 <= when.timestamp() <= time.time() + 1


def test_a_perl_without_time_hires_falls_back_to_bash(tmp_path):
    """Debian's perl-base alone has no Time::HiRes: the output must not be lost to it."""
    functions = re.search(r"^STAMP_PERL=.*?^stamp\(\) \{.*?^\}$", TEMPLATE, re.M | re.S)
    assert functions is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_perl = bin_dir / "perl"
    fake_perl.write_text('#!/bin/sh\necho "Can\'t locate Time/HiRes.pm" >&2\nexit 2\n')
    fake_perl.chmod(0o755)
    log, done = tmp_path / "out.log", tmp_path / "done"
    subprocess.run(
        ["bash", "-c", f'{functions[0]}\nPATH="{bin_dir}:$PATH"\nstamp "{log}" "{done}"'],
        input=b"kept\n",
        check=True,
    )
    assert done.exists()
    assert re.fullmatch(f"{STAMP} kept\n", log.read_text())
