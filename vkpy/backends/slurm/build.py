"""`build_slurm_backend`: a `SlurmBackend` with the runner its configuration asks for."""

from __future__ import annotations

from vkpy.backends.batch.runner import build_runner
from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.backends.slurm.config import SlurmConfig


def build_slurm_backend(config: SlurmConfig, *, node_name: str) -> SlurmBackend:
    """The backend the agent runs for ``backend: {kind: slurm, ...}``."""
    return SlurmBackend(build_runner(config), config, node_name)
