"""A job's user log (``log = ...``, written by the schedd's shadow on the submit node),
read for one thing: whether the job executes now, and since when. Pure.

Each event opens with ``<event number> (<cluster>.<proc>.<subproc>) <date> <time>`` and
ends with a ``...`` line. The date is ISO (``2026-12-04``) or, in older HTCondor, the
month and day alone (``12/04``); the time is the submit node's local time unless the
pool's log format adds ``Z`` or an offset. With file transfer this is how the start of a
job is seen on the fast clock, before its status files come back and without a
``condor_q``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# Events after which the job executes (execute; unsuspended: the same run goes on), is
# suspended (its run kept), and after which it does not (submitted, failed to execute,
# evicted, terminated, shadow exception, aborted, held, released).
_EXECUTE, _UNSUSPENDED, _SUSPENDED = "001", "011", "010"
_STOPS = ("000", "002", "004", "005", "007", "009", "012", "013")
_HEADER = re.compile(
    r"^(\d{3}) \((\d+)\.(\d+)\.\d+\) "
    r"(?:(\d{4})-(\d\d)-(\d\d)|(\d\d)/(\d\d)(?:/(\d\d))?)[ T](\d\d):(\d\d):(\d\d)(?:\.\d+)?"
    r"(Z|[+-]\d\d:?\d\d)? "
)
_DAY = 86400


@dataclass(frozen=True)
class Executing:
    """The job the log says executes, and since when (epoch seconds)."""

    job_id: str  # cluster.proc
    since: int


def executing(lines: Iterable[str], *, utc_offset: int, now: float) -> Executing | None:
    """The job executing now by the log's last state event; None when the last one says
    it does not (idle, held, evicted, ended) or the log says nothing yet.
    ``utc_offset``: the submit node's, for times without one; ``now`` places a date
    without a year."""
    run: Executing | None = None  # the job's current run, suspended or not
    running = False
    for line in lines:
        header = _HEADER.match(line)
        if header is None:
            continue
        code, job = header[1], f"{int(header[2])}.{int(header[3])}"
        if code == _EXECUTE or (code == _UNSUSPENDED and (run is None or run.job_id != job)):
            when = _epoch(header, utc_offset=utc_offset, now=now)
            run = Executing(job, when) if when is not None else None
            running = run is not None
        elif code == _UNSUSPENDED:
            running = True
        elif code == _SUSPENDED:
            running = False
        elif code in _STOPS:
            run, running = None, False
    return run if running else None


def _epoch(header: re.Match[str], *, utc_offset: int, now: float) -> int | None:
    offset = utc_offset if header[13] is None else _offset(header[13])
    zone = timezone(timedelta(seconds=offset))
    month, day = (header[5], header[6]) if header[4] else (header[7], header[8])
    clock = (int(header[10]), int(header[11]), int(header[12]))
    if header[4] or header[9]:
        years = [int(header[4] or f"20{header[9]}")]
    else:  # no year: this year's date, unless that lies ahead (a log from last December)
        this_year = datetime.fromtimestamp(now, zone).year
        years = [this_year, this_year - 1]
    for year in years:
        try:
            when = int(datetime(year, int(month), int(day), *clock, tzinfo=zone).timestamp())
        except ValueError:  # no such date (a damaged line, or 29 February)
            continue
        if len(years) == 1 or when <= now + _DAY:
            return when
    return None


def _offset(zone: str) -> int:
    if zone == "Z":
        return 0
    digits = zone[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + int(digits[2:]) * 60
    return -seconds if zone[0] == "-" else seconds
