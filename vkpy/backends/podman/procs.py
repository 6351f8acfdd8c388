"""The host's processes, for what Podman 4.3's API cannot do: kill an exec'd process
and let go of an ended exec session.

Rootful Podman reports an exec session's PID as the host sees it; killing it (and what
it started) is how a caller that went away ends the command, as there is no exec stop
endpoint before Podman 4.8. And for each exec session started over the API, conmon
forks a child that sleeps ``exit_command_delay`` (containers.conf, 300 s by default)
before it runs ``podman container cleanup --rm --exec SESSION CONTAINER``, to keep
the exit code readable. Once we have read it, SIGTERM ends that sleep: conmon's
handler for it returns, ``sleep`` is interrupted, and Podman's own cleanup runs now.

The table of processes is read from /proc; what to do with it are pure functions.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
KILL_ROUNDS = 3  # a tree being killed may still fork: look again


@dataclass(frozen=True)
class Proc:
    ppid: int
    argv: tuple[str, ...]


def _parent(stat: str) -> int:
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    return int(stat.rpartition(")")[2].split()[1])


def table(proc: Path = PROC) -> dict[int, Proc]:
    """Every process we may see, by PID (those that vanish while read are skipped)."""
    found: dict[int, Proc] = {}
    for entry in proc.iterdir():
        if not entry.name.isdecimal():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = _parent((entry / "stat").read_text())
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            found[int(entry.name)] = Proc(
                ppid, tuple(a.decode(errors="replace") for a in argv if a)
            )
    return found


def tree(root: int, processes: Mapping[int, Proc]) -> list[int]:
    """``root`` and all its descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, proc in processes.items():
        children.setdefault(proc.ppid, []).append(pid)
    order, todo = [], [root] if root in processes else []
    while todo:
        pid = todo.pop(0)
        order.append(pid)
        todo.extend(sorted(children.get(pid, ())))
    return order


def _is_session_conmon(proc: Proc | None, session: str) -> bool:
    if proc is None or not proc.argv or Path(proc.argv[0]).name != "conmon":
        return False
    return "--exec" in proc.argv and session in proc.argv


def exit_delay_sleepers(session: str, processes: Mapping[int, Proc]) -> list[int]:
    """The conmon children of ``session`` sleeping before the cleanup command: a conmon
    of the session whose parent is one too."""
    return sorted(
        pid
        for pid, proc in processes.items()
        if _is_session_conmon(proc, session)
        and _is_session_conmon(processes.get(proc.ppid), session)
    )


def _signal(pids: Iterable[int], signum: int) -> int:
    sent = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            sent += 1
    return sent


def kill_tree(root: int) -> int:
    """SIGKILL ``root`` and its descendants; how many signals were sent. Raises
    PermissionError when they are not ours to kill."""
    total = 0
    for _ in range(KILL_ROUNDS):
        pids = tree(root, table())
        if not pids:
            break
        total += _signal(pids, signal.SIGKILL)
    return total


def end_exit_delay(session: str) -> int:
    """Let Podman clean up an ended exec session now; how many sleepers were woken."""
    return _signal(exit_delay_sleepers(session, table()), signal.SIGTERM)
