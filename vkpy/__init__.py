"""vkpy: a pure-Python virtual kubelet that runs Kubernetes pods on batch systems."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vkpy")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
