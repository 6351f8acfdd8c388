"""The Podman backend's configuration (``backend: {kind: podman, ...}``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from vkpy.configbase import Strict


class PodmanConfig(Strict):
    kind: Literal["podman"] = "podman"
    socket: str | None = Field(
        None,
        description="Podman API socket path or unix:// URL. Unset: the agent starts "
        "`podman system service` itself on a private socket.",
    )
    containers_conf: Path | None = Field(
        None, description="containers.conf for a Podman service the agent starts."
    )
    allowed_host_paths: list[str] = Field(
        default_factory=list,
        description="hostPath volumes are refused unless under one of these directories.",
    )
    network: Literal["bridge", "host", "none"] = Field(
        "bridge", description="Network mode of each pod's Podman pod."
    )
    resync_seconds: float = Field(
        60.0, gt=0, description="Full status resync period, a safety net under the events."
    )
    state_dir: Path | None = Field(
        None,
        description="Directory for each pod's files: staged ConfigMap/Secret volumes, "
        "emptyDirs and the container specs restarts are made from (mode 0700 per pod). "
        "Unset: /var/lib/vkpy/podman as root, else ~/.local/state/vkpy/podman.",
    )
    memory_dir: Path = Field(
        Path("/dev/shm/vkpy-podman"),  # noqa: S108 - tmpfs by design; per-pod dirs are 0700
        description="Directory on a tmpfs for emptyDir volumes with medium Memory "
        "(shared by the pod's containers; sizeLimit is not enforced).",
    )
    api_timeout_seconds: float = Field(
        30.0, gt=0, description="Timeout of one Podman API call (streams and pulls excepted)."
    )
    pull_timeout_seconds: float = Field(600.0, gt=0, description="Timeout of one image pull.")
    max_pods: int = Field(
        110,
        ge=1,
        description="Pods the node accepts; reported with the host's CPU and memory "
        "as the node's capacity.",
    )
