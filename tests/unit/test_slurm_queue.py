"""squeue/sacct output parsing, on output captured from Slurm 22.05 on the testbed."""

from vkpy.backends.slurm import queue
from vkpy.backends.slurm.state import JobState

# squeue --me --noheader "--format=%i|%T|%j|%r|%k" --states=all, captured; plus another
# node's job and another user's job name that must be ignored.
SQUEUE = (
    "35|CANCELLED|vkpy_capture_55555555-5555-4555-8555-555555555555|None|"
    "vkpy node=capture pod=ns/p uid=55555555-5555-4555-8555-555555555555\n"
    "36|COMPLETED|vkpy_capture_66666666-6666-4666-8666-666666666666|None|"
    "vkpy node=capture pod=ns/p uid=66666666-6666-4666-8666-666666666666\n"
    "31|FAILED|vkpy_capture_11111111-1111-4111-8111-111111111111|NonZeroExitCode|"
    "vkpy node=capture pod=ns/p uid=11111111-1111-4111-8111-111111111111\n"
    "32|PENDING|vkpy_capture_22222222-2222-4222-8222-222222222222|JobHeldUser|"
    "vkpy node=capture pod=ns/p uid=22222222-2222-4222-8222-222222222222\n"
    "33|RUNNING|vkpy_capture_33333333-3333-4333-8333-333333333333|None|"
    "vkpy node=capture pod=ns/p uid=33333333-3333-4333-8333-333333333333\n"
    "34|TIMEOUT|vkpy_capture_44444444-4444-4444-8444-444444444444|TimeLimit|"
    "vkpy node=capture pod=ns/p uid=44444444-4444-4444-8444-444444444444\n"
    "40|RUNNING|vkpy_capture-2_77777777-7777-4777-8777-777777777777|None|"
    "vkpy node=capture-2 pod=ns/q uid=77777777-7777-4777-8777-777777777777\n"
    "41|RUNNING|wrap|None|(null)\n"
)
# sacct --noheader --parsable2 --format=jobid,jobname,state,exitcode --completion, captured.
SACCT = """\
31|vkpy_capture_11111111-1111-4111-8111-111111111111|FAILED|3:0
36|vkpy_capture_66666666-6666-4666-8666-666666666666|COMPLETED|0:0
35|vkpy_capture_55555555-5555-4555-8555-555555555555|CANCELLED|0:0
34|vkpy_capture_44444444-4444-4444-8444-444444444444|TIMEOUT|0:0
"""


def test_squeue_keeps_this_nodes_jobs_by_uid():
    jobs = queue.parse_squeue(SQUEUE, "capture")
    assert set(jobs) == {
        "55555555-5555-4555-8555-555555555555",
        "66666666-6666-4666-8666-666666666666",
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333",
        "44444444-4444-4444-8444-444444444444",
    }
    held = jobs["22222222-2222-4222-8222-222222222222"]
    assert (held.job_id, held.state, held.reason) == ("32", JobState.PENDING, "JobHeldUser")
    assert jobs["33333333-3333-4333-8333-333333333333"].reason == ""  # "None" is no reason
    assert jobs["44444444-4444-4444-8444-444444444444"].state is JobState.TIMEOUT
    assert set(queue.parse_squeue(SQUEUE, "capture-2")) == {"77777777-7777-4777-8777-777777777777"}


def test_squeue_prefers_the_newest_job_of_a_pod():
    lines = (
        "7|FAILED|vkpy_n_11111111-1111-4111-8111-111111111111|None|\n"
        "12|RUNNING|vkpy_n_11111111-1111-4111-8111-111111111111|None|\n"
        "9|CANCELLED|vkpy_n_11111111-1111-4111-8111-111111111111|None|\n"
    )
    assert queue.parse_squeue(lines, "n")["11111111-1111-4111-8111-111111111111"].job_id == "12"


def test_squeue_ignores_garbage():
    assert queue.parse_squeue("squeue: error: something\n\n|||\n", "n") == {}


def test_sacct_records():
    records = queue.parse_sacct(SACCT)
    assert records["31"].state is JobState.FAILED and records["31"].exit_code == 3
    assert records["36"].exit_code == 0
    assert records["35"].state is JobState.CANCELLED
    assert records["34"].state is JobState.TIMEOUT


def test_sacct_skips_steps_and_keeps_the_last_line_of_a_requeued_job():
    text = "5|x|NODE_FAIL|0:0\n5.batch|batch|CANCELLED|0:15\n5|x|COMPLETED|0:0\n6|y|FAILED|0:9\n"
    records = queue.parse_sacct(text)
    assert set(records) == {"5", "6"}
    assert records["5"].state is JobState.COMPLETED
    assert (records["6"].exit_code, records["6"].signal) == (137, 9)


def test_commands():
    assert queue.squeue_argv() == [
        "squeue",
        "--me",
        "--noheader",
        "--format=%i|%T|%j|%r|%k",
        "--local",
        "--states=all",
    ]
    assert "--local" not in queue.squeue_argv(federation=True)
    active = queue.squeue_argv(names=["a", "b"], active_only=True)
    assert active[-2].startswith("--states=PD,") and "CD" not in active[-2].split("=")[1].split(",")
    assert active[-1] == "--name=a,b"
    assert queue.sacct_argv(["9", "3", "9"], jobcomp=True) == [
        "sacct",
        "--noheader",
        "--parsable2",
        "--format=jobid,jobname,state,exitcode",
        "--completion",
        "--jobs=3,9",
    ]
    assert "--allocations" in queue.sacct_argv(["1"], jobcomp=False)
