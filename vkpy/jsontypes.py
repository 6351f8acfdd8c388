"""The one name for a decoded JSON object: Kubernetes objects, Podman's answers."""

from typing import Any

JSON = dict[str, Any]
