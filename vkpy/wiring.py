"""Builds the configured backend; the one place that knows every backend kind."""

from __future__ import annotations

from vkpy.backend import Backend
from vkpy.config import Settings


def build_backend(settings: Settings) -> Backend:
    config = settings.backend
    if config.kind == "podman":
        from vkpy.backends.podman import PodmanBackend

        return PodmanBackend(config, node_name=settings.node.name)
    raise AssertionError(f"unknown backend kind {config.kind}")  # pydantic refused it already
