"""The job event log: the stand-in writes it as HTCondor's own reader (htcondor2's
JobEventLog) reads it, and `events.executing` reads what that reader reads."""

from __future__ import annotations

import time
from pathlib import Path

import htcondor2
import pytest

from vkpy.backends.htcondor import events
from vkpy.backends.htcondor.events import Executing
from vkpy.testing import condor_standin

NOW = 1796378400.0  # 2026-12-04 10:00:00 UTC


def standin_log(tmp_path: Path, *codes: str) -> Path:
    """The stand-in's events of job 12.0, one after another."""
    tmp_path.mkdir(exist_ok=True)
    ad = {"ClusterId": 12, "ProcId": 0, "Iwd": str(tmp_path), "UserLog": "job.log"}
    said = {
        "000": ("Job submitted from host: <127.0.0.1:9618?addrs=127.0.0.1-9618>",),
        "001": ("Job executing on host: <127.0.0.1:9618?addrs=127.0.0.1-9618>",),
        "005": (
            "Job terminated.",
            "(1) Normal termination (return value 3)",
            *condor_standin._TERMINATED_USAGE,
        ),
        "009": ("Job was aborted.", "via condor_rm (by user u)"),
        "012": ("Job was held.", "The job exceeded allowed job duration of 5", "Code 46 Subcode 0"),
    }
    for code in codes:
        condor_standin._log_event(ad, code, *said[code])
    return tmp_path / "job.log"


def test_the_stand_ins_events_are_read_by_htcondors_reader(tmp_path):
    path = standin_log(tmp_path, "000", "001", "012", "009")
    read = list(htcondor2.JobEventLog(str(path)).events(0))
    assert [int(e.type) for e in read] == [0, 1, 12, 9]
    assert read[2]["HoldReasonCode"] == 46
    ended = list(htcondor2.JobEventLog(str(standin_log(tmp_path / "x", "000", "005"))).events(0))
    assert ended[-1]["ReturnValue"] == 3


def test_a_job_executes_from_its_execute_event_as_htcondor_dates_it(tmp_path):
    path = standin_log(tmp_path, "000", "001")
    read = list(htcondor2.JobEventLog(str(path)).events(0))
    offset = time.localtime().tm_gmtoff  # the stand-in writes local time, as HTCondor
    found = events.executing(path.read_text().splitlines(), utc_offset=offset, now=time.time())
    assert found == Executing("12.0", read[1].timestamp)


@pytest.mark.parametrize("after", ["005", "009", "012"])
def test_a_job_that_ended_or_is_held_does_not_execute(tmp_path, after):
    lines = standin_log(tmp_path, "000", "001", after).read_text().splitlines()
    assert events.executing(lines, utc_offset=0, now=time.time()) is None


def lines(*events_: str) -> list[str]:
    return [line for event in events_ for line in (event, "...")]


@pytest.mark.parametrize(
    ("header", "offset", "since"),
    [
        ("001 (012.000.000) 2026-12-04 10:00:01 Job executing", 0, NOW + 1),
        ("001 (012.000.000) 2026-12-04 11:00:01 Job executing", 3600, NOW + 1),
        ("001 (012.000.000) 2026-12-04 10:00:01Z Job executing", 3600, NOW + 1),  # UTC option
        ("001 (012.000.000) 2026-12-04T12:00:01.250+02:00 Job executing", 0, NOW + 1),
        ("001 (012.000.000) 12/04 10:00:01 Job executing", 0, NOW + 1),  # before ISO dates
        ("001 (012.000.000) 12/31 23:00:00 Job executing", 0, 1767222000),  # last year's
    ],
)
def test_the_forms_of_an_event_time(header, offset, since):
    found = events.executing(lines(header), utc_offset=offset, now=NOW + 5)
    assert found == Executing("12.0", int(since))


def test_a_suspension_pauses_the_run_and_a_release_starts_another():
    first = "001 (012.000.000) 2026-12-04 10:00:01 Job executing on host: <h>"
    suspended = "010 (012.000.000) 2026-12-04 10:00:02 Job was suspended."
    resumed = "011 (012.000.000) 2026-12-04 10:00:03 Job was unsuspended."
    held = "012 (012.000.000) 2026-12-04 10:00:04 Job was held."
    released = "013 (012.000.000) 2026-12-04 10:00:05 Job was released."
    again = "001 (012.000.000) 2026-12-04 10:00:09 Job executing on host: <h>"

    def now(*seen: str) -> Executing | None:
        return events.executing(lines(*seen), utc_offset=0, now=NOW + 60)

    assert now(first) == Executing("12.0", int(NOW) + 1)
    assert now(first, suspended) is None
    assert now(first, suspended, resumed) == Executing("12.0", int(NOW) + 1)  # the same run
    assert now(first, resumed) == Executing("12.0", int(NOW) + 1)
    assert now(first, held) is None and now(first, held, released) is None
    assert now(first, held, released, again) == Executing("12.0", int(NOW) + 9)


@pytest.mark.parametrize(
    "line",
    ["", "...", "001 (x.0.0) 2026-12-04 10:00:01 Job", "001 (12.0.0) 2026-13-04 10:00:01 Job"],
)
def test_lines_that_are_no_event_say_nothing(line):
    assert events.executing([line], utc_offset=0, now=NOW) is None
