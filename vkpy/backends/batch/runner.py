"""`build_runner`: the command runner a batch backend's configuration asks for."""

from __future__ import annotations

from pathlib import Path

from vkpy.backends.batch.config import BatchConfig
from vkpy.transport import LocalRunner, Runner, SshRunner


def build_runner(config: BatchConfig) -> Runner:
    """SSH to the configured login (or submit) node, or local commands when there is none."""
    if config.ssh is not None:
        return SshRunner(config.ssh, timeout=config.command_timeout_seconds)
    # Relative work directories are under the home directory, as over SSH.
    return LocalRunner(cwd=Path.home(), timeout=config.command_timeout_seconds)
