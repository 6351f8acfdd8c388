import logging

import pytest

from vkpy.backends.slurm import state
from vkpy.backends.slurm.state import JobState, Phase


@pytest.mark.parametrize(
    ("text", "expected", "phase"),
    [
        ("PD", JobState.PENDING, Phase.WAITING),
        ("PENDING", JobState.PENDING, Phase.WAITING),
        ("CF", JobState.CONFIGURING, Phase.WAITING),
        ("S", JobState.SUSPENDED, Phase.WAITING),
        ("R", JobState.RUNNING, Phase.RUNNING),
        ("RUNNING", JobState.RUNNING, Phase.RUNNING),
        ("CG", JobState.COMPLETING, Phase.RUNNING),
        ("CD", JobState.COMPLETED, Phase.TERMINATED),
        ("F", JobState.FAILED, Phase.TERMINATED),
        ("TO", JobState.TIMEOUT, Phase.TERMINATED),
        ("OOM", JobState.OUT_OF_MEMORY, Phase.TERMINATED),
        ("OUT_OF_MEMORY", JobState.OUT_OF_MEMORY, Phase.TERMINATED),
        ("NF", JobState.NODE_FAIL, Phase.TERMINATED),
        ("PR", JobState.PREEMPTED, Phase.TERMINATED),
        ("CA", JobState.CANCELLED, Phase.TERMINATED),
        ("CANCELLED by 1001", JobState.CANCELLED, Phase.TERMINATED),
        ("DL", JobState.DEADLINE, Phase.TERMINATED),
        ("RQ", JobState.REQUEUED, Phase.WAITING),
        (" completed ", JobState.COMPLETED, Phase.TERMINATED),
    ],
)
def test_states_map_to_phases(text, expected, phase):
    parsed = state.parse(text)
    assert parsed is expected
    assert parsed.phase is phase
    assert parsed.terminal is (phase is Phase.TERMINATED)


def test_unknown_state_is_active_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="vkpy.backends.slurm.state"):
        first = state.parse("WIBBLING")
        second = state.parse("WIBBLING")
    assert first is second is JobState.UNKNOWN
    assert first.phase is Phase.RUNNING and not first.terminal
    assert [r.getMessage() for r in caplog.records].count(
        "unknown Slurm job state 'WIBBLING': treating the job as active"
    ) == 1


def test_every_state_has_a_phase():
    assert {s.phase for s in JobState} == set(Phase)


@pytest.mark.parametrize(
    ("job", "container_reason", "pod_reason"),
    [
        (JobState.TIMEOUT, "DeadlineExceeded", "DeadlineExceeded"),
        (JobState.DEADLINE, "DeadlineExceeded", "DeadlineExceeded"),
        (JobState.OUT_OF_MEMORY, "OOMKilled", ""),
        (JobState.NODE_FAIL, "NodeFail", "NodeFail"),
        (JobState.PREEMPTED, "Preempted", "Preempted"),
        (JobState.CANCELLED, "Error", ""),
    ],
)
def test_abnormal_endings(job, container_reason, pod_reason):
    end = state.ending(job)
    assert end is not None
    assert (end.container_reason, end.pod_reason) == (container_reason, pod_reason)
    assert end.message


@pytest.mark.parametrize("job", [JobState.COMPLETED, JobState.FAILED, JobState.RUNNING])
def test_normal_endings_have_no_special_reason(job):
    assert state.ending(job) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0:0", (0, None)),
        ("3:0", (3, None)),
        ("0:15", (143, 15)),
        ("0:9", (137, 9)),
        ("", (0, None)),
        ("x:y", (0, None)),
    ],
)
def test_sacct_exit_codes(text, expected):
    assert state.exit_code(text) == expected
