"""Which failed batch-system commands are worth retrying. Pure.

A batch command that fails because the scheduler is busy or unreachable is retried
later (`BackendUnavailable`); one that refuses the pod is final (`PodRejected`). The
words below are how Slurm, HTCondor and the shell say the first.
"""

from __future__ import annotations

from vkpy.transport import Completed

# Answers that say "try again later", not "this pod cannot run".
TRANSIENT_MARKERS = (
    "socket timed out",
    "timed out",
    "unable to contact slurm controller",
    "failed to connect",
    "can't find address",
    "connection refused",
    "temporarily unavailable",
    "try again",
    "zero bytes were transmitted",
    "communication connection failure",
    "not responding",
    "transport endpoint",
)


def transient(completed: Completed) -> bool:
    """Whether a failed batch command is worth retrying (not found, unreachable, busy)."""
    text = completed.stderr.decode("utf-8", errors="replace").lower()
    return completed.status in (126, 127) or any(m in text for m in TRANSIENT_MARKERS)
