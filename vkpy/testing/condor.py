"""Installs the HTCondor stand-in on the testbed's login node (see `condor_standin`).

The four commands are symlinks to one copy of the stand-in, beside the module it
imports, in a root-owned, world-readable directory that sshd puts first on the login
user's PATH.
"""

from __future__ import annotations

from pathlib import Path

from vkpy.testing import condor_standin, condor_syntax

COMMANDS = tuple(condor_standin.COMMANDS)
INTERPRETER = "/usr/bin/python3"  # the login node's own Python, not the agent's venv


def bin_dir_of(shared: Path) -> Path:
    """Where `install` puts the commands: the directory to put on PATH."""
    return shared / "condor" / "bin"


def install(shared: Path) -> Path:
    """Install the stand-in under ``shared``; return the directory to put on PATH."""
    bin_dir = bin_dir_of(shared)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for directory in (shared / "condor", bin_dir):
        directory.chmod(0o755)
    source = Path(condor_standin.__file__).read_text()
    program = bin_dir.parent / "standin.py"
    program.write_text(f"#!{INTERPRETER}\n{source}")
    program.chmod(0o755)
    syntax = bin_dir.parent / "condor_syntax.py"  # imported from the program's directory
    syntax.write_text(Path(condor_syntax.__file__).read_text())
    syntax.chmod(0o644)
    for command in COMMANDS:
        link = bin_dir / command
        link.unlink(missing_ok=True)
        link.symlink_to(program)
    return bin_dir
