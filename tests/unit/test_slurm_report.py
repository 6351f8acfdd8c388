from datetime import UTC, datetime

import pytest

from vkpy.backend import Running, Terminated, Waiting
from vkpy.backends.batch import records, report
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.records import PodMeta
from vkpy.backends.batch.state import Phase
from vkpy.backends.slurm.listing import job_view, settling
from vkpy.backends.slurm.queue import JobRecord
from vkpy.backends.slurm.state import JobState

UID = "9d6c1f3e-8f0a-4a3e-9b7d-2c5e6f7a8b9c"
LAYOUT = Layout("/home/u/vkpy/n1")
META = PodMeta("ns", "web", ("setup",), ("main", "side"), {"main": "img:1"}, "Never")


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def files(job=(), job_id="77", **containers) -> records.PodFiles:
    found = records.PodFiles(meta=META, job_id=job_id, job=list(job))
    for name, lines in containers.items():
        found.containers[name] = list(lines)
    return found


def view_of(found, state, *, reason="", exit_code=None, lost=False):
    """The view Slurm's listing builds from a record in ``state`` (None: no record)."""
    record = None if state is None else JobRecord(found.job_id, state, "", reason, exit_code)
    return job_view(found, record, lost=lost)


def run_of(found, state=None, **kwargs):
    view = view_of(found, state, **kwargs)
    run = report.pod_run(UID, found, view)
    assert run is not None
    return run, view


def by_name(run):
    return {c.name: c for c in (*run.init_containers, *run.containers)}


def test_status_lines_are_read_per_pod_and_file():
    base = LAYOUT.status(UID)
    output = "\n".join(
        [
            f"{base}/_pod:{META.to_json()}",
            f"{base}/_jobid:77",
            f"{base}/_job:begin 100 node1 77 10.0.0.5",
            f"{base}/main:start 101 0",
            f"{base}/main:exit 0 105 0",
            "/elsewhere/x/status/main:start 1 0",
            f"{LAYOUT.base}/{UID}/logs/main.0.log:not a status file",
            "grep: something: Permission denied",
        ]
    )
    parsed = records.parse_status_lines(output, LAYOUT)
    assert set(parsed) == {UID}
    found = parsed[UID]
    assert found.meta == META and found.job_id == "77"
    assert found.job == ["begin 100 node1 77 10.0.0.5"]
    assert found.containers == {"main": ["start 101 0", "exit 0 105 0"]}


def test_queued_job():
    run, view = run_of(files(), JobState.PENDING, reason="Resources")
    assert view.phase is Phase.WAITING
    states = {name: c.state for name, c in by_name(run).items()}
    assert states["setup"] == Waiting("ContainerCreating", "Slurm job 77 is queued: Resources")
    assert states["main"] == Waiting("PodInitializing")
    assert (run.namespace, run.name, run.job_id, run.reason) == ("ns", "web", "77", "")
    assert by_name(run)["main"].image == "img:1"
    assert not report.finished(run, view)


def test_running_job():
    found = files(
        ["begin 100 node1 77 10.0.0.5"],
        setup=["start 100 0", "exit 0 101 0"],
        main=["start 102 0"],
    )
    run, _ = run_of(found, JobState.RUNNING)
    containers = by_name(run)
    assert containers["setup"].state == Terminated(
        0, "Completed", started_at=at(100), finished_at=at(101)
    )
    assert containers["main"].state == Running(at(102))
    assert containers["main"].container_id == "slurm://77/main/0"
    assert containers["side"].state == Waiting("ContainerCreating")
    assert run.pod_ip == "10.0.0.5"


def test_crash_loop_back_off():
    found = files(
        ["begin 100 n 77 -"],
        setup=["start 100 0", "exit 0 100 0"],
        main=["start 101 0", "exit 1 102 0", "start 112 1", "exit 2 113 1", "wait 133"],
    )
    run, _ = run_of(found, JobState.RUNNING)
    main = by_name(run)["main"]
    assert isinstance(main.state, Waiting) and main.state.reason == "CrashLoopBackOff"
    assert main.restart_count == 1
    assert main.last_state == Terminated(2, "Error", started_at=at(112), finished_at=at(113))
    assert run.pod_ip is None


def test_slurm_time_limit_is_deadline_exceeded():
    found = files(
        ["begin 100 n 77 -", "stop 160 signal"],
        setup=["start 100 0", "exit 0 100 0"],
        main=["start 101 0", "exit 143 161 0"],  # stopped by the script
        side=["start 101 0"],  # killed before it could be recorded
    )
    run, view = run_of(found, JobState.TIMEOUT)
    main, side = by_name(run)["main"], by_name(run)["side"]
    assert run.reason == "DeadlineExceeded"
    assert main.state.reason == side.state.reason == "DeadlineExceeded"
    assert main.state.exit_code == 143 and main.state.signal == 15
    assert side.state.exit_code == 137 and side.state.finished_at is None
    assert report.finished(run, view)


def test_a_container_that_ended_before_the_stop_keeps_its_reason():
    found = files(
        ["begin 100 n 77 -", "stop 160 signal"],
        setup=["start 100 0", "exit 0 100 0"],
        main=["start 101 0", "exit 4 120 0"],
        side=["start 101 0", "exit 143 161 0"],
    )
    run, _ = run_of(found, JobState.TIMEOUT)
    assert by_name(run)["main"].state.reason == "Error"
    assert by_name(run)["side"].state.reason == "DeadlineExceeded"


def test_our_own_deadline():
    found = files(
        ["begin 100 n 77 -", "stop 110 deadline", "end 143 112"],
        setup=["start 100 0", "exit 0 100 0"],
        main=["start 101 0", "exit 143 111 0"],
    )
    run, _ = run_of(found, JobState.FAILED)
    assert run.reason == "DeadlineExceeded"
    assert by_name(run)["main"].state.reason == "DeadlineExceeded"
    assert by_name(run)["side"].state.reason == "DeadlineExceeded"  # never ran


@pytest.mark.parametrize(
    ("job", "reason"),
    [(JobState.NODE_FAIL, "NodeFail"), (JobState.PREEMPTED, "Preempted"), (JobState.CANCELLED, "")],
)
def test_jobs_ended_by_slurm_before_anything_ran(job, reason):
    run, view = run_of(files(), job)
    assert run.reason == reason
    setup = by_name(run)["setup"]
    assert isinstance(setup.state, Terminated) and setup.state.exit_code == 137
    assert setup.state.message.endswith("before the container ran")
    assert report.finished(run, view)


def test_out_of_memory():
    found = files(
        ["begin 100 n 77 -", "end 137 120"],
        setup=["start 100 0", "exit 0 100 0"],
        main=["start 101 0", "exit 137 119 0"],
        side=["start 101 0", "exit 0 110 0"],
    )
    run, _ = run_of(found, JobState.OUT_OF_MEMORY)
    assert by_name(run)["main"].state.reason == "OOMKilled"
    assert by_name(run)["side"].state.reason == "Completed"
    assert run.reason == ""


def test_requeued_job_waits_with_its_last_run_as_last_state():
    found = files(
        ["begin 100 n 77 -"],
        setup=["start 100 0", "exit 0 100 0", "start 200 1", "exit 0 200 1"],
        main=["start 101 0"],
    )
    run, _ = run_of(found, JobState.PENDING, reason="BeginTime")
    main = by_name(run)["main"]
    assert isinstance(main.state, Waiting)
    assert main.last_state is not None and main.last_state.message == "the Slurm job was requeued"
    assert by_name(run)["setup"].restart_count == 1


def test_end_recorded_by_the_script_without_a_slurm_record():
    found = files(
        ["begin 100 n 77 -", "end 0 110"],
        setup=["start 100 0", "exit 0 100 0"],
        main=["start 101 0", "exit 0 105 0"],
        side=["start 101 0", "exit 0 106 0"],
    )
    run, view = run_of(found, None)
    assert view.phase is Phase.TERMINATED and report.finished(run, view)
    assert all(c.state.reason == "Completed" for c in run.containers)


def test_script_ended_while_slurm_still_completes():
    found = files(["begin 100 n 77 -", "end 0 110"], setup=["start 100 0", "exit 0 100 0"])
    assert view_of(found, JobState.COMPLETING).phase is Phase.TERMINATED


def test_job_without_any_record():
    found = files(["begin 100 n 77 -"], setup=["start 100 0", "exit 0 100 0"], main=["start 101 0"])
    run, view = run_of(found, None)
    assert view.phase is Phase.RUNNING  # not lost yet: the agent waits a while
    assert isinstance(by_name(run)["main"].state, Running)
    run, view = run_of(found, None, lost=True)
    main = by_name(run)["main"]
    assert view.lost and main.state.reason == "ContainerStatusUnknown"
    assert main.state.exit_code == 137


def test_submitted_but_not_started_without_record_is_waiting():
    run, view = run_of(files(job_id=""), None)
    assert view.phase is Phase.WAITING
    assert by_name(run)["setup"].state == Waiting(
        "ContainerCreating", "the Slurm job is being submitted"
    )


def test_no_meta_no_record():
    found = records.PodFiles(job_id="1")
    assert report.pod_run(UID, found, view_of(found, None)) is None


def test_meta_round_trip_and_garbage():
    assert PodMeta.from_json(META.to_json()) == META
    assert PodMeta.from_json("{not json") is None
    assert PodMeta.from_json('{"namespace": "a"}') is None


def test_history_tolerates_garbage_lines():
    past = records.history(
        ["start x 0", "exit 1 2", "start 100 0", "bogus", "exit z 1 0", "exit 3 101 0"]
    )
    assert past.runs == (records.Run(0, at(100), 3, at(101)),)


def test_a_stopped_job_settles_until_slurm_says_how_it_ended():
    found = files(
        ["begin 100 n 77 -", "stop 160 signal", "end 143 161"],
        setup=["start 100 0", "exit 0 100 0"],
        main=["start 101 0", "exit 143 161 0"],
    )
    # Slurm still completes the job: the cause (time limit? cancel?) is not known yet.
    assert settling(found, JobState.COMPLETING)
    assert settling(found, JobState.RUNNING)
    run, view = run_of(found, JobState.COMPLETING)
    assert not report.finished(run, view)
    # Slurm's verdict ends it.
    assert not settling(found, JobState.TIMEOUT)
    assert not settling(found, None)
    run, view = run_of(found, JobState.TIMEOUT)
    assert report.finished(run, view) and run.reason == "DeadlineExceeded"


def test_a_running_job_is_not_settling():
    found = files(["begin 100 n 77 -"], main=["start 101 0"])
    assert not settling(found, JobState.RUNNING)


def test_the_image_id_recorded_before_a_run_is_the_containers():
    digest = "ab" * 32
    found = files(
        job=["begin 100 node1 77 10.0.0.5"],
        setup=["start 100 0", "exit 0 101 0"],
        main=[f"image {digest}", "start 101 0"],
        side=["start 101 0"],  # its image had to be pulled: no ID known
    )
    run, _ = run_of(found, JobState("RUNNING"))
    containers = by_name(run)
    assert containers["main"].image_id == f"sha256:{digest}"
    assert containers["side"].image_id == ""
