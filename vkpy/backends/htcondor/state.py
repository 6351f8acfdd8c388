"""HTCondor job ClassAds to job states (pure).

JobStatus: 1 idle and 7 suspended wait; 2 running and 6 transferring output run;
4 completed and 3 removed are terminated with the real exit code (ExitCode, or
128 + ExitSignal when ExitBySignal); 5 held waits with its HoldReason as message,
except a hold for exceeding allowed_job_duration (HoldReasonCode 46), which ends the
pod with DeadlineExceeded. Unknown statuses wait, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vkpy.backends.batch.state import Ending, Phase
from vkpy.backends.htcondor.submit import UID_ATTRIBUTE

logger = logging.getLogger(__name__)

IDLE, RUNNING, REMOVED, COMPLETED, HELD, TRANSFERRING, SUSPENDED = 1, 2, 3, 4, 5, 6, 7
HOLD_DURATION_EXCEEDED = 46
# What list() asks condor_q and condor_history for.
ATTRIBUTES = (
    "ClusterId",
    "ProcId",
    "JobStatus",
    UID_ATTRIBUTE,
    "HoldReason",
    "HoldReasonCode",
    "RemoveReason",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "EnteredCurrentStatus",
    "JobCurrentStartDate",
)


@dataclass(frozen=True)
class JobState:
    """Where one job stands, as the pod's report needs it."""

    job_id: str  # ClusterId.ProcId
    status: int | None
    phase: Phase
    ending: Ending | None = None  # how HTCondor ended it, when abnormally
    message: str = ""  # why it waits (held: the HoldReason)
    exit_code: int | None = None
    signal: int | None = None
    started: int | None = None  # epoch second the current run began (a running job)

    @property
    def terminal(self) -> bool:
        return self.phase is Phase.TERMINATED


def job_id(ad: Mapping[str, Any]) -> str:
    return f"{ad.get('ClusterId')}.{ad.get('ProcId', 0)}"


def whole(value: Any) -> int | None:
    """An attribute's integer value; None when it holds none (a ClassAd from a newer or
    a broken schedd may hold anything)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdecimal():
        return int(value)
    return None


def exit_code(ad: Mapping[str, Any]) -> tuple[int, int | None]:
    """(exit code as a shell reports it, signal or None)."""
    if ad.get("ExitBySignal"):
        signal = whole(ad.get("ExitSignal")) or 9
        return 128 + signal, signal
    return whole(ad.get("ExitCode", ad.get("ExitStatus"))) or 0, None


def job_state(ad: Mapping[str, Any]) -> JobState:
    ident = job_id(ad)
    status = ad.get("JobStatus")
    if status in (RUNNING, TRANSFERRING):
        began = whole(ad.get("JobCurrentStartDate")) or whole(ad.get("EnteredCurrentStatus"))
        return JobState(ident, status, Phase.RUNNING, started=began or None)
    if status == IDLE:
        return JobState(ident, status, Phase.WAITING, message=f"HTCondor job {ident} is idle")
    if status == SUSPENDED:
        return JobState(ident, status, Phase.WAITING, message=f"HTCondor job {ident} is suspended")
    if status == HELD:
        reason = str(ad.get("HoldReason") or "held")
        if ad.get("HoldReasonCode") == HOLD_DURATION_EXCEEDED:
            deadline = Ending("DeadlineExceeded", "DeadlineExceeded", reason)
            return JobState(ident, status, Phase.TERMINATED, deadline, reason)
        return JobState(
            ident, status, Phase.WAITING, message=f"HTCondor job {ident} is held: {reason}"
        )
    if status in (COMPLETED, REMOVED):
        code, signal = exit_code(ad)
        ending: Ending | None = None
        if status == REMOVED:
            why = str(ad.get("RemoveReason") or "removed")
            ending = Ending("Error", "", f"the HTCondor job was removed: {why}")
        return JobState(ident, status, Phase.TERMINATED, ending, exit_code=code, signal=signal)
    logger.warning("HTCondor job %s has unknown JobStatus %r", ident, status)
    return JobState(ident, status, Phase.WAITING, message=f"HTCondor JobStatus {status!r}")


def queued_job_state(ad: Mapping[str, Any]) -> JobState:
    """`job_state` of an ad condor_q still shows. A removed job stays in the queue until
    its processes have been vacated: its containers may still be stopping, so it counts
    as running (the status files say how far it got) until it leaves."""
    if ad.get("JobStatus") == REMOVED:
        began = ad.get("JobCurrentStartDate")
        return JobState(job_id(ad), REMOVED, Phase.RUNNING, started=whole(began) or None)
    return job_state(ad)


def by_pod(ads: Iterable[Mapping[str, Any]]) -> dict[str, tuple[Mapping[str, Any], ...]]:
    """The ads of each pod UID, newest job first; ads without the attribute are skipped."""
    pods: dict[str, list[Mapping[str, Any]]] = {}
    for ad in ads:
        uid = ad.get(UID_ATTRIBUTE)
        if isinstance(uid, str) and uid:
            pods.setdefault(uid, []).append(ad)
    return {uid: tuple(sorted(found, key=_submitted, reverse=True)) for uid, found in pods.items()}


def _submitted(ad: Mapping[str, Any]) -> tuple[int, int]:
    """The order the schedd gave the job (cluster, then proc)."""
    return whole(ad.get("ClusterId")) or 0, whole(ad.get("ProcId")) or 0
