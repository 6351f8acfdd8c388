"""What list() reports across listings, from status files and Slurm records it is given."""

from collections import Counter

import pytest

from vkpy.backend import Running, Terminated
from vkpy.backends.batch.clock import QueueClock
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.records import PodFiles, PodMeta
from vkpy.backends.slurm.listing import Listing
from vkpy.backends.slurm.queue import JobRecord
from vkpy.backends.slurm.state import JobState
from vkpy.errors import BackendUnavailable
from vkpy.transport import Completed, LocalRunner

UID = "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b"
META = PodMeta("ns", "p", (), ("main",), {"main": "img"}, "Never")


def files(job: list[str], main: list[str]) -> dict[str, PodFiles]:
    found = PodFiles(meta=META, job_id="9", job=job)
    found.containers["main"] = main
    return {UID: found}


def listing() -> Listing:
    known = Listing(LocalRunner(), node="n", accounting="jobcomp")
    known.remember(UID, "9", namespace="ns", name="p")
    return known


def queue(state: JobState) -> dict[str, JobRecord]:
    return {UID: JobRecord("9", state, f"vkpy_n_{UID}")}


def main_state(runs):
    return runs[UID].containers[0].state


def test_a_job_that_ended_between_reading_files_and_the_queue_is_read_again():
    seen = listing()
    running = files(["begin 100 h 9 -"], ["start 101 0"])
    assert isinstance(main_state(seen._records(running, queue(JobState.RUNNING), {})), Running)
    # The files were read while it ran; the queue, read after, says it is over.
    held = seen._records(running, queue(JobState.COMPLETED), {})
    assert isinstance(main_state(held), Running)
    assert seen.known[UID].final is None
    ended = files(["begin 100 h 9 -", "end 0 103"], ["start 101 0", "exit 0 102 0"])
    final = seen._records(ended, queue(JobState.COMPLETED), {})
    state = main_state(final)
    assert isinstance(state, Terminated) and (state.exit_code, state.reason) == (0, "Completed")
    assert seen.known[UID].final is not None
    assert seen._records({}, {}, {}) == final  # finished: reported without reading again


def test_a_killed_job_is_believed_on_the_second_look():
    seen = listing()
    killed = files(["begin 100 h 9 -"], ["start 101 0"])
    first = seen._records(killed, queue(JobState.NODE_FAIL), {})
    assert isinstance(main_state(first), Running)  # nothing earlier: as the files say
    second = seen._records(killed, queue(JobState.NODE_FAIL), {})
    assert main_state(second).reason == "NodeFail"
    assert second[UID].reason == "NodeFail"


def seen_running_then_stopped() -> tuple[Listing, dict[str, PodFiles]]:
    """A listing that saw the job run, and the files of its script stopped by a signal."""
    seen = listing()
    seen._records(files(["begin 100 h 9 -"], ["start 101 0"]), queue(JobState.RUNNING), {})
    stopped = files(
        ["begin 100 h 9 -", "stop 150 signal", "end 143 151"],
        ["start 101 0", "exit 143 151 0"],
    )
    return seen, stopped


def test_a_stopped_job_holds_its_record_while_slurm_completes_it():
    seen, stopped = seen_running_then_stopped()
    held = seen._records(stopped, queue(JobState.COMPLETING), {})
    assert isinstance(main_state(held), Running)
    timed_out = seen._records(stopped, queue(JobState.TIMEOUT), {})
    assert main_state(timed_out).reason == "DeadlineExceeded"
    assert timed_out[UID].reason == "DeadlineExceeded"


def test_a_timed_out_job_that_left_the_queue_waits_for_accounting():
    seen, stopped = seen_running_then_stopped()
    # Gone from the queue before a read saw it end, and not written down yet.
    for _ in range(2):
        seen.clock.reads += 1
        held = seen._records(stopped, {}, {})
        assert isinstance(main_state(held), Running) and seen.clock.asked
    left = {"9": JobRecord("9", JobState.TIMEOUT, exit_code=143)}
    timed_out = seen._records(stopped, {}, left)
    assert main_state(timed_out).reason == "DeadlineExceeded"


def test_a_stopped_job_slurm_never_accounts_for_is_concluded_from_its_files():
    seen = listing()
    seen._records(files(["begin 100 h 9 -"], ["start 101 0"]), queue(JobState.RUNNING), {})
    stopped = files(["begin 100 h 9 -", "end 1 151"], ["start 101 0", "exit 1 151 0"])
    for _ in range(3):
        seen.clock.reads += 1
        runs = seen._records(stopped, {}, {})
    state = main_state(runs)
    assert isinstance(state, Terminated) and state.exit_code == 1


async def test_accounting_is_asked_about_failed_ends_not_clean_ones():
    runner = Scripted(Completed(("squeue",), 0, b""))
    seen = Listing(runner, node="n", accounting="jobcomp")
    failed = files(["begin 100 h 9 -", "end 1 151"], ["start 101 0", "exit 1 151 0"])
    await seen.read_queue(failed)
    assert runner.calls["sacct"] == 1
    clean = files(["begin 100 h 9 -", "end 0 151"], ["start 101 0", "exit 0 151 0"])
    await seen.read_queue(clean)
    assert runner.calls["sacct"] == 1


def test_a_final_pod_whose_script_recorded_its_end_needs_no_queue_to_delete():
    seen = listing()
    running = files(["begin 100 h 9 -"], ["start 101 0"])
    seen._records(running, queue(JobState.RUNNING), {})
    assert not seen.settled(UID)
    ended = files(["begin 100 h 9 -", "end 0 103"], ["start 101 0", "exit 0 102 0"])
    seen._records(ended, queue(JobState.RUNNING), {})  # squeue is older
    assert seen.settled(UID)


def test_a_final_pod_killed_before_its_script_ended_asks_the_queue_on_delete():
    seen = listing()
    killed = files(["begin 100 h 9 -"], ["start 101 0"])
    seen._records(killed, queue(JobState.NODE_FAIL), {})
    seen._records(killed, queue(JobState.NODE_FAIL), {})
    assert seen.known[UID].final is not None
    seen.jobs = {}  # the queue read since no longer shows the job
    assert not seen.settled(UID)


def test_accounting_answers_for_jobs_that_left_the_queue():
    seen = listing()
    killed = files(["begin 100 h 9 -"], ["start 101 0"])
    left = {"9": JobRecord("9", JobState.OUT_OF_MEMORY, exit_code=137)}
    seen._records(killed, {}, left)
    runs = seen._records(killed, {}, left)
    assert main_state(runs).reason == "OOMKilled"


def test_deleted_pods_are_never_reported_again():
    seen = listing()
    seen.forget(UID)
    assert seen._records(files([], []), queue(JobState.RUNNING), {}) == {}
    seen.remember(UID, "9", namespace="ns", name="p")  # created again
    assert UID in seen._records(files([], []), queue(JobState.PENDING), {})


def test_pods_whose_work_directory_vanished_are_forgotten():
    seen = listing()
    seen._records({}, {}, {})
    assert UID in seen.known  # once could be a job just found in the queue
    seen._records({}, {}, {})
    assert UID not in seen.known


def test_a_job_seen_waiting_that_began_since_is_running_without_a_new_squeue():
    seen = listing()
    waiting = files([], [])
    seen.begins = {UID: 0}
    first = seen._records(waiting, queue(JobState.PENDING), {})
    assert first[UID].containers[0].state.reason == "ContainerCreating"
    began = files(["begin 100 h 9 -"], ["start 101 0"])
    assert isinstance(main_state(seen._records(began, queue(JobState.PENDING), {})), Running)


def test_a_requeued_job_the_queue_shows_waiting_is_not_taken_for_running():
    seen = listing()
    before = files(["begin 100 h 9 -"], ["start 101 0"])
    seen.begins = {UID: 1}  # the squeue that said PENDING saw this begin already
    state = main_state(seen._records(before, queue(JobState.PENDING), {}))
    assert not isinstance(state, Running)


def test_containers_that_all_ended_0_are_final_without_waiting_for_slurm():
    seen = listing()
    ended = files(["begin 100 h 9 -", "end 0 103"], ["start 101 0", "exit 0 102 0"])
    runs = seen._records(ended, queue(JobState.RUNNING), {})  # squeue is older
    state = main_state(runs)
    assert isinstance(state, Terminated) and state.reason == "Completed"
    assert seen.known[UID].final is not None and not seen.clock.asked


def test_a_failure_waits_for_slurms_word_and_asks_the_queue_sooner():
    seen = listing()
    running = files(["begin 100 h 9 -"], ["start 101 0"])
    seen._records(running, queue(JobState.RUNNING), {})
    failed = files(["begin 100 h 9 -", "end 137 103"], ["start 101 0", "exit 137 102 0"])
    held = seen._records(failed, queue(JobState.RUNNING), {})
    assert isinstance(main_state(held), Running)  # Slurm may say OUT_OF_MEMORY, TIMEOUT...
    assert seen.clock.asked and seen.known[UID].final is None


class Scripted:
    """A runner that answers the status read with the time only, and squeue as told."""

    def __init__(self, squeue: Completed) -> None:
        self.squeue = squeue
        self.calls: Counter[str] = Counter()

    async def run(self, argv, *, stdin=None, timeout=None, idempotent=False):  # type: ignore[no-untyped-def]
        self.calls[argv[0]] += 1
        if argv[0] == "squeue":
            return self.squeue
        return Completed(tuple(argv), 0, b"1000\n")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_failing_scheduler_is_asked_no_more_often_than_the_floor():
    down = Completed(
        ("squeue",), 1, b"", b"slurm_load_jobs error: Unable to contact slurm controller"
    )
    runner, clock = Scripted(down), Clock()
    seen = Listing(runner, node="n", accounting="none", clock=QueueClock(30, 10, now=clock))
    for moment in (0, 1, 2, 5, 9.9):
        clock.now = moment
        with pytest.raises(BackendUnavailable, match="squeue failed"):
            await seen.list(Layout("/w/n"))
    assert runner.calls["squeue"] == 1
    clock.now = 10
    runner.squeue = Completed(("squeue",), 0, b"")
    assert await seen.list(Layout("/w/n")) == {}
    assert runner.calls["squeue"] == 2


async def test_with_nothing_unfinished_a_listing_reads_nothing_until_its_clocks_say():
    runner, clock = Scripted(Completed(("squeue",), 0, b"")), Clock()
    seen = Listing(runner, node="n", accounting="none", clock=QueueClock(30, 10, now=clock))
    await seen.list(Layout("/w/n"))
    first = dict(runner.calls)
    for _ in range(5):
        await seen.list(Layout("/w/n"))
    assert dict(runner.calls) == first  # quiet: the last answer again, no command
