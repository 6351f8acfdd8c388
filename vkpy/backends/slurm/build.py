"""`build_slurm_backend`: a `SlurmBackend` with the runner its configuration asks for."""

from __future__ import annotations

from pathlib import Path

from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.config import HTCondorConfig, SlurmConfig
from vkpy.transport import LocalRunner, Runner, SshRunner


def build_runner(config: SlurmConfig | HTCondorConfig) -> Runner:
    """SSH to the configured login (or submit) node, or local commands when there is none."""
    if config.ssh is not None:
        return SshRunner(config.ssh, timeout=config.command_timeout_seconds)
    # Relative work directories are under the home directory, as over SSH.
    return LocalRunner(cwd=Path.home(), timeout=config.command_timeout_seconds)


def build_slurm_backend(config: SlurmConfig, *, node_name: str) -> SlurmBackend:
    """The backend the agent runs for ``backend: {kind: slurm, ...}``."""
    return SlurmBackend(build_runner(config), config, node_name)
