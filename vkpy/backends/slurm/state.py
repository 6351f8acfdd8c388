"""Slurm job states and what each means for a pod. Pure.

squeue prints states long (``RUNNING``) or short (``R``); sacct long, sometimes with
a suffix (``CANCELLED by 1001``). `parse` takes any of them; a state this table does
not know becomes `JobState.UNKNOWN`, with a warning, and counts as still active. Each
state maps to a batch `Phase`, and those that end a pod abnormally to an `Ending`.
"""

from __future__ import annotations

import enum
import logging

from vkpy.backends.batch.state import Ending, Phase

logger = logging.getLogger(__name__)


class JobState(enum.Enum):
    """A Slurm job state, by its long name."""

    PENDING = "PENDING"  #: queued, waiting for resources or priority
    CONFIGURING = "CONFIGURING"  #: allocated, nodes booting or being set up
    SUSPENDED = "SUSPENDED"  #: allocated but stopped (gang scheduling, admin)
    REQUEUED = "REQUEUED"  #: put back in the queue; it runs again
    REQUEUE_HOLD = "REQUEUE_HOLD"  #: requeued and held
    REQUEUE_FED = "REQUEUE_FED"  #: requeued by the federation
    RESV_DEL_HOLD = "RESV_DEL_HOLD"  #: held because its reservation was deleted
    STOPPED = "STOPPED"  #: stopped with SIGSTOP; it resumes
    RUNNING = "RUNNING"  #: the batch script runs
    COMPLETING = "COMPLETING"  #: the script ended; Slurm cleans up the nodes
    RESIZING = "RESIZING"  #: changing size; it keeps running
    SIGNALING = "SIGNALING"  #: being signalled; it keeps running
    STAGE_OUT = "STAGE_OUT"  #: staging out burst buffer data
    COMPLETED = "COMPLETED"  #: the script exited 0
    FAILED = "FAILED"  #: the script exited non-zero
    TIMEOUT = "TIMEOUT"  #: it reached its time limit
    OUT_OF_MEMORY = "OUT_OF_MEMORY"  #: killed for exceeding its memory
    NODE_FAIL = "NODE_FAIL"  #: a node it ran on failed
    PREEMPTED = "PREEMPTED"  #: preempted by a job of higher priority
    CANCELLED = "CANCELLED"  #: cancelled by the user or an administrator
    DEADLINE = "DEADLINE"  #: it could not finish before its --deadline
    BOOT_FAIL = "BOOT_FAIL"  #: its nodes failed to boot
    SPECIAL_EXIT = "SPECIAL_EXIT"  #: requeued in a special state, held
    REVOKED = "REVOKED"  #: revoked (a sibling job of a federation ran)
    UNKNOWN = "UNKNOWN"  #: a state vkpy does not know; treated as still active

    @property
    def phase(self) -> Phase:
        return _PHASES[self]

    @property
    def terminal(self) -> bool:
        return self.phase is Phase.TERMINATED


_SHORT = {
    "PD": JobState.PENDING,
    "CF": JobState.CONFIGURING,
    "S": JobState.SUSPENDED,
    "RQ": JobState.REQUEUED,
    "RH": JobState.REQUEUE_HOLD,
    "RF": JobState.REQUEUE_FED,
    "RD": JobState.RESV_DEL_HOLD,
    "ST": JobState.STOPPED,
    "R": JobState.RUNNING,
    "CG": JobState.COMPLETING,
    "RS": JobState.RESIZING,
    "SI": JobState.SIGNALING,
    "SO": JobState.STAGE_OUT,
    "CD": JobState.COMPLETED,
    "F": JobState.FAILED,
    "TO": JobState.TIMEOUT,
    "OOM": JobState.OUT_OF_MEMORY,
    "NF": JobState.NODE_FAIL,
    "PR": JobState.PREEMPTED,
    "CA": JobState.CANCELLED,
    "DL": JobState.DEADLINE,
    "BF": JobState.BOOT_FAIL,
    "SE": JobState.SPECIAL_EXIT,
    "RV": JobState.REVOKED,
}

_WAITING = {
    JobState.PENDING,
    JobState.CONFIGURING,
    JobState.SUSPENDED,
    JobState.REQUEUED,
    JobState.REQUEUE_HOLD,
    JobState.REQUEUE_FED,
    JobState.RESV_DEL_HOLD,
    JobState.SPECIAL_EXIT,
}
_RUNNING = {
    JobState.RUNNING,
    JobState.COMPLETING,
    JobState.RESIZING,
    JobState.SIGNALING,
    JobState.STAGE_OUT,
    JobState.STOPPED,
    JobState.UNKNOWN,
}
_PHASES = {
    state: Phase.WAITING
    if state in _WAITING
    else Phase.RUNNING
    if state in _RUNNING
    else Phase.TERMINATED
    for state in JobState
}

_warned: set[str] = set()


def parse(text: str) -> JobState:
    """The state named by squeue's or sacct's ``text``; UNKNOWN (and a warning once) if
    there is no such state."""
    word = text.strip().split(" ", 1)[0].rstrip("+").upper()
    if word in _SHORT:
        return _SHORT[word]
    try:
        return JobState(word)
    except ValueError:
        if word not in _warned:
            _warned.add(word)
            logger.warning("unknown Slurm job state %r: treating the job as active", text)
        return JobState.UNKNOWN


_ENDINGS = {
    JobState.TIMEOUT: Ending(
        "DeadlineExceeded",
        "DeadlineExceeded",
        "the Slurm job reached its time limit",
    ),
    JobState.DEADLINE: Ending(
        "DeadlineExceeded",
        "DeadlineExceeded",
        "the Slurm job could not finish before its deadline",
    ),
    JobState.OUT_OF_MEMORY: Ending(
        "OOMKilled", "", "the Slurm job was killed for exceeding its memory"
    ),
    JobState.NODE_FAIL: Ending("NodeFail", "NodeFail", "the node the Slurm job ran on failed"),
    JobState.BOOT_FAIL: Ending("NodeFail", "NodeFail", "the Slurm job's nodes failed to boot"),
    JobState.PREEMPTED: Ending("Preempted", "Preempted", "the Slurm job was preempted"),
    JobState.CANCELLED: Ending("Error", "", "the Slurm job was cancelled"),
    JobState.REVOKED: Ending("Error", "", "the Slurm job was revoked"),
}


def ending(state: JobState) -> Ending | None:
    """How ``state`` ended the pod, for states that end it abnormally; else None."""
    return _ENDINGS.get(state)


def exit_code(text: str) -> tuple[int, int | None]:
    """sacct's ``ExitCode`` ``code:signal`` → (exit code as a shell reports it, signal)."""
    code, _, sig = text.strip().partition(":")
    try:
        status, signal = int(code or 0), int(sig or 0)
    except ValueError:
        return 0, None
    if signal:
        return 128 + signal, signal
    return status, None
