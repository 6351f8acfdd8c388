"""`build_htcondor_backend`: an `HTCondorBackend` with the runner its configuration asks for."""

from __future__ import annotations

from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.backends.slurm.build import build_runner
from vkpy.config import HTCondorConfig


def build_htcondor_backend(config: HTCondorConfig, *, node_name: str) -> HTCondorBackend:
    """The backend the agent runs for ``backend: {kind: htcondor, ...}``."""
    return HTCondorBackend(build_runner(config), config, node_name)
