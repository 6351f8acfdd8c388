"""The Podman backend: each Kubernetes pod a Podman pod, through Podman's REST API.

Why the libpod REST API over aiohttp, and not podman-py: the agent is asyncio code that
must never block its event loop, and podman-py is synchronous (every call would need a
thread); it also drops ``nano_cpus`` silently, so CPU limits would vanish. The REST API
is Podman's stable, versioned interface (``/v4.0.0/libpod/...``), it streams events and
logs, and one small client (`api`) holds everything Podman-specific about talking to it.

Modules: `config` (`PodmanConfig`), `api` (the client), `spec` (PodSpec → JSON bodies),
`volumes` (the pod's files on the host), `observed` (Podman's state as values),
`progress` (what a pod needs next), `status` (→ `PodRun`), `driver` (events in,
statuses out, next steps done), `service` (a private ``podman system service``),
`backend` (`PodmanBackend`, tying them together). For exec, attach and port-forward:
`target` (which container), `hijack` (the connection Podman hands over), `session`
(the `Process` over it), `exec`, `attach`, `forward`, and `procs` (host processes).
`spec`, `observed`, `progress` and `status` are pure functions over plain values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vkpy.backends.podman.backend import PodmanBackend

__all__ = ["PodmanBackend"]


def __getattr__(name: str) -> object:
    """`PodmanBackend` on first use: `vkpy.config` reads this package's ``config``
    module, and must not load the backend with it."""
    if name == "PodmanBackend":
        from vkpy.backends.podman.backend import PodmanBackend

        return PodmanBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
