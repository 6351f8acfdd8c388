"""Where a batch job stands, in words every batch system maps its own states to. Pure.

Each system keeps a table from its states to these (`vkpy.backends.slurm.state`,
`vkpy.backends.htcondor.state`); the rest of the batch layer knows only these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(enum.Enum):
    WAITING = "waiting"  # not running yet (or again): containers wait
    RUNNING = "running"  # the job script runs
    TERMINATED = "terminated"  # over for good


@dataclass(frozen=True)
class Ending:
    """How a job that ended abnormally shows in the pod: the reason of the containers
    it stopped, and the pod-level reason (empty when the pod has none)."""

    container_reason: str
    pod_reason: str
    message: str
