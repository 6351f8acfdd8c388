"""`build_htcondor_backend`: an `HTCondorBackend` with the runner its configuration asks for."""

from __future__ import annotations

from collections.abc import Mapping

from vkpy.backends.batch.runner import build_runner
from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.backends.htcondor.config import HTCondorConfig


def build_htcondor_backend(
    config: HTCondorConfig, *, node_name: str, offered: Mapping[str, str] | None = None
) -> HTCondorBackend:
    """The backend the agent runs for ``backend: {kind: htcondor, ...}``; ``offered``:
    the node's configured capacity, which it reports with ``max_pods`` pods."""
    backend = HTCondorBackend(build_runner(config), config, node_name)
    backend.offered = offered
    return backend
