"""Kubelet API ports, one per node, from the operator's range.

The apiserver dials a kubelet at its Node's InternalIP and daemonEndpoints port, and
sends no TLS SNI to an IP address, so one listener could not tell the nodes apart:
every node has a port of its own. A node keeps its port while its VirtualNode exists.
"""

from __future__ import annotations

from vkpy.errors import ConfigError


def parse_range(text: str) -> range:
    """``"10300-10399"`` as the range of ports it names, both ends included."""
    first, sep, last = text.partition("-")
    try:
        low, high = int(first), int(last if sep else first)
    except ValueError:
        raise ConfigError(f"kubelet port range {text!r}: expected FIRST-LAST") from None
    if not 1 <= low <= high <= 65535:
        raise ConfigError(f"kubelet port range {text!r}: ports 1-65535, first <= last")
    return range(low, high + 1)


class PortPool:
    def __init__(self, ports: range) -> None:
        self.ports = ports
        self.held: dict[str, int] = {}

    def take(self, owner: str) -> int:
        """``owner``'s port: the one it holds, else the lowest free one."""
        if owner in self.held:
            return self.held[owner]
        used = set(self.held.values())
        for port in self.ports:
            if port not in used:
                self.held[owner] = port
                return port
        raise ConfigError(
            f"no kubelet port left in {self.ports.start}-{self.ports.stop - 1} "
            f"({len(self.ports)} nodes at most)"
        )

    def release(self, owner: str) -> None:
        self.held.pop(owner, None)
