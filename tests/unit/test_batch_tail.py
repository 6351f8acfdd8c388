"""The fast clock's read of the status files, run for real (bash, find, grep) on a
directory laid out as a node's: only what changed is read, finished pods cost nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from vkpy.backends.batch import tail
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.tail import StatusTail
from vkpy.transport import Completed, LocalRunner

A = "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a01"
B = "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a02"
META = '{"namespace": "ns", "name": "p", "init": [], "containers": ["main"], "images": {}}'


class CountingRunner(LocalRunner):
    """A local runner that keeps what each command printed."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Completed] = []

    async def run(self, argv, *, stdin=None, timeout=None, idempotent=False):  # type: ignore[no-untyped-def,override]
        answer = await super().run(argv, stdin=stdin, timeout=timeout, idempotent=idempotent)
        self.answers.append(answer)
        return answer


def write(path: Path, text: str, *, age: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))


def pod(base: Path, uid: str, *, age: float = 0) -> Path:
    status = base / uid / "status"
    write(status / "_pod", META + "\n", age=age)
    write(status / "_jobid", "9\n", age=age)
    write(status / "_job", "begin 100 h 9 -\n", age=age)
    write(status / "main", "start 101 0\n", age=age)
    return status


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "node"


async def test_the_first_read_is_whole_and_later_ones_only_what_changed(base):
    a = pod(base, A, age=600)
    runner, layout, reader = CountingRunner(), Layout(str(base)), StatusTail()
    found = await reader.discover(runner, layout)
    assert found[A].meta is not None and found[A].job_id == "9"
    again = await reader.read(runner, layout, [A])
    assert again[A].containers["main"] == ["start 101 0"]
    assert runner.answers[-1].text.count("\n") == 1  # only the time: nothing changed
    write(a / "main", "start 101 0\nexit 0 105 0\n")
    changed = await reader.read(runner, layout, [A])
    assert changed[A].containers["main"] == ["start 101 0", "exit 0 105 0"]
    assert changed[A].job == ["begin 100 h 9 -"] and changed[A].meta is not None
    assert runner.answers[-1].text.count(":") == 2  # the one changed file


async def test_a_pod_first_asked_for_is_read_whole(base):
    pod(base, A, age=600)
    runner, layout, reader = CountingRunner(), Layout(str(base)), StatusTail()
    await reader.discover(runner, Layout(str(base / "elsewhere")))
    found = await reader.read(runner, layout, [A])
    assert found[A].meta is not None and found[A].containers["main"] == ["start 101 0"]


async def test_pods_not_asked_for_are_not_read_nor_kept(base):
    pod(base, A, age=600)
    pod(base, B)
    runner, layout, reader = CountingRunner(), Layout(str(base)), StatusTail()
    await reader.discover(runner, layout)
    assert set(await reader.read(runner, layout, [B])) == {B}
    assert set(reader.files) == {B}
    assert A not in runner.answers[-1].text


async def test_a_pod_whose_directory_is_gone_is_dropped(base):
    pod(base, A)
    runner, layout, reader = CountingRunner(), Layout(str(base)), StatusTail()
    await reader.discover(runner, layout)
    for path in sorted((base / A).rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    assert await reader.read(runner, layout, [A]) == {}
    assert A not in reader.files


async def test_a_failed_read_raises_and_keeps_what_was_read():
    class Broken(LocalRunner):
        async def run(self, argv, *, stdin=None, timeout=None, idempotent=False):  # type: ignore[no-untyped-def,override]
            return Completed(tuple(argv), 255, b"", b"ssh: connection lost")

    reader = StatusTail()
    reader.files[A] = {"main": ["start 1 0"]}
    with pytest.raises(Exception, match="connection lost"):
        await reader.read(Broken(), Layout("/nowhere"), [A])
    assert reader.files[A] == {"main": ["start 1 0"]}


def test_groups_go_on_stdin_with_their_times():
    data = tail.read_stdin({0: ["/b/x/status"], 50: ["/b/y/status", "/b/z/status"]})
    assert data == b"0\x001\x00/b/x/status\x0050\x002\x00/b/y/status\x00/b/z/status\x00"


EVENT = "001 (012.000.000) 2026-12-04 10:00:01 Job executing on host: <10.0.0.7:9618>"


async def test_a_pods_event_log_is_read_with_its_status_files_by_what_changed(base):
    a = pod(base, A, age=600)
    pod(base, B, age=600)
    events = base / A / "logs" / "_job.log"
    write(events, "000 (012.000.000) 2026-12-04 10:00:00 Job submitted from host\n...\n", age=600)
    runner, layout, reader = CountingRunner(), Layout(str(base)), StatusTail()
    found = await reader.discover(runner, layout)
    assert found[A].events[0].startswith("000 (012.000.000)") and found[B].events == []
    assert found[A].containers.keys() == {"main"}  # the log is no container
    await reader.read(runner, layout, [A, B])
    assert runner.answers[-1].text.count("\n") == 1  # nothing changed, nothing printed
    write(events, events.read_text() + EVENT + "\n...\n")
    changed = await reader.read(runner, layout, [A, B])
    assert changed[A].events[-2:] == [EVENT, "..."]
    assert changed[A].containers["main"] == ["start 101 0"] and a.exists()
    printed = {line.partition(":")[0] for line in runner.answers[-1].text.splitlines()[1:]}
    assert printed == {str(events)}  # the one changed file


@pytest.mark.parametrize(
    ("line", "now", "offset"),
    [("1733300000 +0100", 1733300000, 3600), ("5 -0330", 5, -12600), ("7", 7, 0)],
)
def test_the_login_nodes_clock(line, now, offset):
    assert tail.parse_clock(line) == tail.Clock(now, offset)


@pytest.mark.parametrize("line", ["", "x +0100", "5 CET", "5 +01", "5 +0100 x"])
def test_a_clock_that_is_not_one(line):
    assert tail.parse_clock(line) is None
