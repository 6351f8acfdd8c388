"""What a VirtualNode's spec holds: the keys of the agent's YAML config, less the fields
the operator sets itself, plus Secret references and the delete policy.

A site's config file moves into a VirtualNode unchanged except for files that hold
secrets (SSH key, known_hosts), which become Secret references, and the fields below
that name the operator's own files and ports.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vkpy.configbase import Strict

# Dotted paths into the spec (``backend.*`` for whichever kind has it) that the operator
# sets itself: gone from the CRD's schema and refused in a spec. Paths on the operator's
# own filesystem would let whoever may create a VirtualNode read the operator's files.
OPERATOR_FIELDS: tuple[str, ...] = (
    "state_dir",
    "log_format",
    "log_level",
    "kubelet_api.port",
    "kubelet_api.health_port",
    "kubelet_api.health_address",
    "kubelet_api.cert_file",
    "kubelet_api.key_file",
    "kubelet_api.client_ca_file",
    "backend.state_dir",
    "backend.ssh.key_files",
    "backend.ssh.known_hosts",
)

OnDelete = Literal["Drain", "Orphan"]


class SecretKeyRef(Strict):
    """One key of a Secret in the VirtualNode's own namespace."""

    name: str = Field(description="Name of the Secret, in the VirtualNode's namespace.")
    key: str = Field(description="Key of the Secret's data holding the file.")


class SshSecrets(Strict):
    """What replaces ``ssh.key_files`` and ``ssh.known_hosts`` in a VirtualNode."""

    key_secret: SecretKeyRef | None = Field(
        None, description="The unencrypted private key to log in with (replaces key_files)."
    )
    known_hosts_secret: SecretKeyRef | None = Field(
        None,
        description="known_hosts the login node's host key is checked against (replaces "
        "known_hosts). Unset: an empty file, so only accept_new_host_keys connects.",
    )


# Where the SSH secret references sit in a spec, and which config field each fills in.
SSH_SECRET_FIELDS: dict[str, str] = {
    "key_secret": "key_files",
    "known_hosts_secret": "known_hosts",
}


class Policy(Strict):
    """The spec's own field, beside the config's keys."""

    on_delete: OnDelete = Field(
        "Drain",
        description="What deleting the VirtualNode does: Drain stops the node's pods in the "
        "backend and deletes the Node; Orphan stops only the agent, leaving the Node "
        "(NotReady) and the jobs for a later VirtualNode of the same node name to adopt.",
    )
