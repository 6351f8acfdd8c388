"""Host key policy: a login node's key must be the one its known_hosts file lists.

asyncssh checks the keys known_hosts lists for the host itself; a key it does not
list reaches `HostKeyPolicy.decide`, which refuses it, except that a host the file
does not list at all is trusted and recorded when the configuration says so
(OpenSSH's ``StrictHostKeyChecking=accept-new``). A host whose key changed is
refused whatever the configuration says.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncssh

logger = logging.getLogger(__name__)


def known_hosts_pattern(host: str, port: int) -> str:
    """How known_hosts names ``host``: bare on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


class HostKeyPolicy:
    """Decides on host keys known_hosts does not list; remembers why it refused one."""

    def __init__(self, known_hosts: Path, *, accept_new: bool) -> None:
        self.path = known_hosts.expanduser()
        self.accept_new = accept_new
        self.refusal = ""  # why the last unlisted key was refused, for the error message

    def prepare(self) -> str | None:
        """The known_hosts path to hand asyncssh, created empty when new keys are
        accepted; None when it is missing (the caller refuses to connect)."""
        if self.path.exists():
            return str(self.path)
        if not self.accept_new:
            return None
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        return str(self.path)

    def decide(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint()
        listed = asyncssh.match_known_hosts(str(self.path), host, addr, port)[0]
        if listed:
            self.refusal = (
                f"the host key of {host}:{port} ({fingerprint}) differs from the one "
                f"{self.path} lists: refusing to connect (possible man-in-the-middle)"
            )
            logger.error("%s", self.refusal)
            return False
        if not self.accept_new:
            self.refusal = (
                f"the host key of {host}:{port} ({fingerprint}) is not in {self.path}; "
                "add it there, or set accept_new_host_keys to trust it on first use"
            )
            return False
        algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
        with open(self.path, "a", encoding="ascii") as known:
            known.write(f"{known_hosts_pattern(host, port)} {algorithm} {blob}\n")
        logger.warning(
            "trusting the new host key of %s:%s (%s); recorded in %s",
            host,
            port,
            fingerprint,
            self.path,
        )
        return True
