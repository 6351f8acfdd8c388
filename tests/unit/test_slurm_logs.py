"""Reading and following log files with the very commands the backend runs remotely."""

import asyncio

from vkpy.backends.batch import logs
from vkpy.backends.batch.naming import Layout
from vkpy.backends.htcondor.queue import QUEUED_TEST as HTCONDOR_QUEUED
from vkpy.backends.slurm import naming
from vkpy.backends.slurm.queue import QUEUED_TEST as SLURM_QUEUED
from vkpy.backends.slurm.queue import parse_sinfo
from vkpy.transport import LocalRunner

from .test_batch_stamps import follow


async def read(argv: list[str]) -> bytes:
    async with LocalRunner().stream(argv) as stream:
        return b"".join([chunk async for chunk in stream.chunks()])


async def test_read_whole_and_tail(tmp_path):
    log = tmp_path / "main.0.log"
    log.write_bytes(b"one\ntwo\nthree\n\xff\x00binary\n")
    assert await read(logs.read_argv(str(log), tail_lines=None)) == log.read_bytes()
    assert await read(logs.read_argv(str(log), tail_lines=2)) == b"three\n\xff\x00binary\n"
    assert await read(logs.read_argv(str(log), tail_lines=0)) == b""


async def test_follow_streams_lines_as_written_and_ends_with_the_run(tmp_path):
    log, done = tmp_path / "main.0.log", tmp_path / "main.0.done"
    log.write_bytes(b"before\n")
    argv = logs.follow_argv(str(log), str(done), job_id="", tail_lines=None, queued=SLURM_QUEUED)
    arrivals: list[tuple[bytes, float]] = []
    task = asyncio.create_task(follow(argv, arrivals))
    await asyncio.sleep(1.2)
    with log.open("ab") as file:
        file.write(b"during\n")
    await asyncio.sleep(1.2)
    with log.open("ab") as file:
        file.write(b"last words\n")
    done.touch()  # the run ended: the follow ends by itself, with every byte
    await asyncio.wait_for(task, timeout=5)
    assert b"".join(c for c, _ in arrivals) == b"before\nduring\nlast words\n"
    during = next(t for c, t in arrivals if b"during" in c)
    assert 1.2 <= during < 2.4  # streamed when written, not at the end


async def test_follow_of_a_file_not_there_yet(tmp_path):
    log, done = tmp_path / "late.log", tmp_path / "late.done"
    argv = logs.follow_argv(str(log), str(done), job_id="", tail_lines=5, queued=SLURM_QUEUED)
    task = asyncio.create_task(read(argv))
    await asyncio.sleep(0.5)
    log.write_bytes(b"hello\n")
    await asyncio.sleep(1.5)
    done.touch()
    assert await asyncio.wait_for(task, timeout=5) == b"hello\n"


def test_sinfo_totals_count_each_node_once():
    # sinfo --noheader --Node --format=%n|%c|%m|%G on the testbed, plus GPU nodes.
    output = (
        "vm|32|16000|(null)\n"
        "gpu1|64|512000|gpu:a100:4(S:0-1)\n"
        "gpu1|64|512000|gpu:a100:4(S:0-1)\n"
        "gpu2|64|512000+|gpu:2,shard:8\n"
    )
    capacity = parse_sinfo(output, pods=500)
    assert capacity is not None
    assert capacity.cpu_millis == 160 * 1000
    assert capacity.memory_bytes == (16000 + 512000 * 2) * 1024 * 1024
    assert capacity.gpus == 6 and capacity.pods == 500
    assert parse_sinfo("", pods=1) is None


def test_job_names_pair_jobs_with_this_nodes_pods():
    uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    name = naming.job_name("hpc-1", uid)
    assert naming.uid_of_job(name, "hpc-1") == uid
    assert naming.uid_of_job(name, "hpc") is None  # node names never hold "_"
    assert naming.uid_of_job(naming.job_name("hpc-1.x", uid), "hpc-1") is None
    assert naming.uid_of_job("vkpy_hpc-1_../../etc", "hpc-1") is None
    layout = Layout("/w/hpc-1")
    assert layout.uid_of_status_file(f"/w/hpc-1/{uid}/status/main") == (uid, "main")
    assert layout.uid_of_status_file(f"/w/hpc-1/{uid}/logs/main.0.log") is None
    assert layout.uid_of_status_file(f"/w/hpc-1/.deleted/{uid}/status/main") is None


async def test_follow_ends_when_the_job_leaves_the_queue_without_a_marker(tmp_path):
    # A job killed outright never writes .done: the queue check ends the follow.
    log, done, job = tmp_path / "main.0.log", tmp_path / "main.0.done", tmp_path / "job-7"
    log.write_bytes(b"last words before SIGKILL\n")
    job.touch()
    argv = logs.follow_argv(
        str(log), str(done), job_id=str(job), tail_lines=None, queued='[ -e "$job" ]', check_every=2
    )
    task = asyncio.create_task(read(argv))
    await asyncio.sleep(2.5)
    assert not task.done()  # still queued: still following
    job.unlink()
    assert await asyncio.wait_for(task, timeout=5) == b"last words before SIGKILL\n"
    assert not done.exists()


def test_queue_checks_take_the_job_id_from_the_script_not_the_pod():
    for queued in (SLURM_QUEUED, HTCONDOR_QUEUED):
        argv = logs.follow_argv("/w/l", "/w/d", job_id="12.0", tail_lines=None, queued=queued)
        assert queued in argv[2] and argv[6] == "12.0"
