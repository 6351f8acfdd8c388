"""The base of every configuration model: unknown fields refused, values frozen.

Its own module so that each package's model (`vkpy.backends.podman.config`, the
transport's `SshConfig`...) can build on it without importing `vkpy.config`, which
assembles them all.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
