"""Command runners: the one place that runs commands on a batch system and opens
connections to it.

A backend gets a `Runner` and never opens a connection itself. `LocalRunner` runs
commands as local subprocesses (the agent runs on a login node); `SshRunner` runs
them on a login node over persistent, multiplexed SSH connections, and stages files
with SFTP. Both take an argv, never a shell string; `command_line` is the one place
argv becomes shell text, with every element quoted.

Modules: `base` (the protocol, `Completed`, `command_line`), `local`, `ssh`,
`hostkeys` (the known_hosts policy).
"""

from vkpy.transport.base import CommandFailed, Completed, Runner, Stream, command_line
from vkpy.transport.local import LocalRunner
from vkpy.transport.ssh import SshRunner

__all__ = [
    "CommandFailed",
    "Completed",
    "LocalRunner",
    "Runner",
    "SshRunner",
    "Stream",
    "command_line",
]
