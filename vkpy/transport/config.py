"""How a runner reaches a login node over SSH: its configuration model."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from vkpy.configbase import Strict


class SshConfig(Strict):
    """How the agent reaches a cluster's login node: one persistent SSH connection."""

    host: str = Field(description="Login node host name or address.")
    port: int = Field(22, ge=1, le=65535, description="SSH port of the login node.")
    user: str = Field(description="Account the pods run as on the cluster.")
    key_files: list[Path] = Field(
        default_factory=list,
        description="Private keys to authenticate with (unencrypted). Empty: the "
        "ssh-agent's keys and the default keys in ~/.ssh, as OpenSSH does.",
    )
    use_agent: bool = Field(True, description="Also offer the keys of the ssh-agent, if one runs.")
    known_hosts: Path = Field(
        Path("~/.ssh/known_hosts"),
        description="known_hosts file the login node's host key is checked against. A key "
        "it does not list refuses the connection (unless accept_new_host_keys), and a key "
        "that differs from the one it lists always does.",
    )
    accept_new_host_keys: bool = Field(
        False,
        description="Trust a host the known_hosts file does not list yet, and record its "
        "key there (OpenSSH's StrictHostKeyChecking=accept-new). Off: unknown keys refuse.",
    )
    pool_size: int = Field(
        1,
        ge=1,
        le=16,
        description="Connections kept open; commands share them as channels (multiplexed).",
    )
    max_sessions: int = Field(
        10,
        ge=3,
        description="Channels open at once on one connection; keep it at or below the "
        "sshd's MaxSessions (OpenSSH's default is 10).",
    )
    max_log_streams: int = Field(
        2,
        ge=1,
        description="Of those channels, how many may follow logs (kubectl logs -f) or run "
        "exec and attach sessions at once.",
    )
    keepalive_seconds: float = Field(
        15.0, gt=0, description="Keepalive interval; a dead connection is noticed and reopened."
    )
    keepalive_count_max: int = Field(
        3, ge=1, description="Unanswered keepalives before the connection counts as dead."
    )
    connect_timeout_seconds: float = Field(
        15.0, gt=0, description="Timeout of one connection attempt (TCP, key exchange, login)."
    )
    reconnect_initial_seconds: float = Field(
        0.5, gt=0, description="Wait after a failed connection attempt; doubles per failure."
    )
    reconnect_max_seconds: float = Field(
        30.0, gt=0, description="Longest wait between connection attempts."
    )

    @model_validator(mode="after")
    def _streams_fit(self) -> SshConfig:
        if self.max_log_streams > self.max_sessions - 2:
            raise ValueError("max_log_streams must leave two channels for commands and SFTP")
        return self
