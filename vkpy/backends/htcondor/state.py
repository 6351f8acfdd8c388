"""HTCondor job ClassAds to job states (pure).

JobStatus: 1 idle and 7 suspended wait; 2 running and 6 transferring output run;
4 completed and 3 removed are terminated with the real exit code (ExitCode, or
128 + ExitSignal when ExitBySignal); 5 held waits with its HoldReason as message,
except a hold for exceeding allowed_job_duration (HoldReasonCode 46), which is the
pod's DeadlineExceeded. Unknown statuses are reported as waiting, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vkpy.backend import Running, Terminated, Waiting

logger = logging.getLogger(__name__)

IDLE, RUNNING, REMOVED, COMPLETED, HELD, TRANSFERRING, SUSPENDED = 1, 2, 3, 4, 5, 6, 7
HOLD_DURATION_EXCEEDED = 46
IN_QUEUE = frozenset({IDLE, RUNNING, HELD, TRANSFERRING, SUSPENDED})


@dataclass(frozen=True)
class JobState:
    """Where one job stands; ``pod_reason`` is set for pod-level endings."""

    cluster: str  # ClusterId.ProcId
    state: Waiting | Running | Terminated
    pod_reason: str = ""
    message: str = ""


def _time(ad: dict[str, Any], *names: str) -> datetime | None:
    for name in names:
        value = ad.get(name)
        if isinstance(value, int | float) and value > 0:
            return datetime.fromtimestamp(value, UTC)
    return None


def exit_code(ad: dict[str, Any]) -> tuple[int, int | None]:
    """(exit code as a shell reports it, signal or None)."""
    if ad.get("ExitBySignal"):
        signal = int(ad.get("ExitSignal") or 9)
        return 128 + signal, signal
    return int(ad.get("ExitCode", ad.get("ExitStatus", 0)) or 0), None


def job_state(ad: dict[str, Any]) -> JobState:
    cluster = f"{ad.get('ClusterId')}.{ad.get('ProcId', 0)}"
    status = ad.get("JobStatus")
    started = _time(ad, "JobStartDate", "JobCurrentStartDate")
    if status in (RUNNING, TRANSFERRING):
        return JobState(
            cluster, Running(started or _time(ad, "EnteredCurrentStatus") or datetime.now(UTC))
        )
    if status == IDLE:
        return JobState(cluster, Waiting("ContainerCreating", "idle in the HTCondor queue"))
    if status == SUSPENDED:
        return JobState(cluster, Waiting("Suspended", "suspended by HTCondor"))
    if status == HELD:
        reason = str(ad.get("HoldReason") or "held")
        if ad.get("HoldReasonCode") == HOLD_DURATION_EXCEEDED:
            ended = _time(ad, "EnteredCurrentStatus")
            return JobState(
                cluster,
                Terminated(137, "DeadlineExceeded", reason, started, ended),
                pod_reason="DeadlineExceeded",
                message=reason,
            )
        return JobState(cluster, Waiting("Held", reason))
    if status in (COMPLETED, REMOVED):
        code, signal = exit_code(ad)
        finished = _time(ad, "CompletionDate", "EnteredCurrentStatus")
        if status == REMOVED:
            why = str(ad.get("RemoveReason") or "removed")
            return JobState(
                cluster,
                Terminated(code or 143, "Error", why, started, finished, signal),
                message=why,
            )
        reason = "Completed" if code == 0 else "Error"
        return JobState(cluster, Terminated(code, reason, "", started, finished, signal))
    logger.warning("job %s has unknown JobStatus %r", cluster, status)
    return JobState(cluster, Waiting("Unknown", f"HTCondor JobStatus {status!r}"))
