"""Every error vkpy raises, in one hierarchy.

    VkpyError
    ├── ConfigError            the configuration is invalid: refuse to start
    ├── PodError               this pod cannot run as specified: fail it, with a reason
    │   ├── UnsupportedPodFeature   it uses something vkpy or the backend does not support
    │   └── PodConfigError          a ConfigMap/Secret it needs is missing (retried)
    │       └── VolumeSourceMissing     one a volume needs: the volume cannot be mounted
    ├── BackendError           the backend failed an operation
    │   ├── BackendUnavailable      transient: retry later, node not Ready meanwhile
    │   ├── PodRejected             permanent: the backend refused this pod
    │   ├── ImagePullError          an image could not be pulled (retried with backoff)
    │   ├── PodNotFound             the backend has no such pod
    │   └── UnsupportedLogOption    a log option this pod's logs cannot honour (HTTP 400)
    ├── KubeApiError           the Kubernetes API failed (transient unless said otherwise)
    └── StreamProtocolError    a streaming peer (SPDY) broke the protocol, reset the stream
                               or went away: that session or stream ends

Third-party errors (aiohttp, asyncssh, OSError, kubernetes_asyncio) are translated
once, where they are caught, with ``raise X(...) from exc``. Callers decide by type:
transient errors are retried, permanent ones end up in a pod's status and an Event.
"""

from __future__ import annotations


class VkpyError(Exception):
    """Base of every error vkpy raises on purpose."""


class ConfigError(VkpyError):
    """The configuration is invalid; the message names the field and the problem."""


class PodError(VkpyError):
    """A pod cannot run as specified. ``reason`` is the CamelCase word for its status."""

    reason = "Failed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UnsupportedPodFeature(PodError):
    """The pod uses a feature this node cannot provide; the pod fails, it never hangs."""

    reason = "UnsupportedPodSpec"


class PodConfigError(PodError):
    """A ConfigMap, Secret or field the pod refers to is missing; retried like the kubelet."""

    reason = "CreateContainerConfigError"


class VolumeSourceMissing(PodConfigError):
    """A ConfigMap or Secret a volume needs is missing. The kubelet mounts volumes before
    it makes containers, so the pod waits in ContainerCreating, with FailedMount events."""

    reason = "ContainerCreating"


class BackendError(VkpyError):
    """A backend operation failed."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached now (SSH down, daemon restarting); retry later."""


class PodRejected(BackendError):
    """The backend refused this pod for good (for example a forbidden batch flag)."""

    reason = "ProviderFailed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ImagePullError(BackendError):
    """A container image could not be pulled."""

    def __init__(self, message: str, *, container: str, never_pull: bool = False) -> None:
        super().__init__(message)
        self.container = container
        # Absent under imagePullPolicy Never: nothing was pulled, nothing will be.
        self.never_pull = never_pull


class PodNotFound(BackendError):
    """The backend holds no pod with this UID."""


class UnsupportedLogOption(BackendError):
    """The logs cannot be read as asked (say, ``sinceTime`` of a log without times)."""


class ContainerNotRunning(BackendError):
    """The container exists but does not run now, so nothing can be run in it."""


class StreamingUnsupported(BackendError):
    """This backend cannot exec, attach or forward ports for this pod; says why."""


class PortUnreachable(BackendError):
    """Nothing accepts connections on the pod's port."""


class KubeApiError(VkpyError):
    """The Kubernetes API answered with an error or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StreamProtocolError(VkpyError):
    """A streaming session cannot go on: the peer sent what the protocol forbids, reset
    the stream, or the connection ended. Ends that stream or session, nothing else."""
