"""Builds the configured backend; the one place that knows every backend kind."""

from __future__ import annotations

from vkpy.backend import Backend
from vkpy.config import Settings, state_directory


def build_backend(settings: Settings) -> Backend:
    config = settings.backend
    if config.kind == "podman":
        from vkpy.backends.podman import PodmanBackend

        if config.state_dir is None:  # beside the agent's own state, per node
            config = config.model_copy(update={"state_dir": state_directory(settings) / "podman"})
        return PodmanBackend(config, node_name=settings.node.name)
    if config.kind == "slurm":
        from vkpy.backends.slurm.build import build_slurm_backend

        return build_slurm_backend(config, node_name=settings.node.name)
    if config.kind == "htcondor":
        from vkpy.backends.htcondor.build import build_htcondor_backend

        return build_htcondor_backend(
            config, node_name=settings.node.name, offered=settings.node.capacity
        )
    raise AssertionError(f"unknown backend kind {config.kind}")  # pydantic refused it already
