"""The fast clock: the status files of the node's unfinished pods, read by what changed.

One remote command per read, touching only the filesystem (never the scheduler):
``find`` picks the files of the asked pods modified since the pod's last read (less a
slack for clocks), ``grep`` prints only those, and the login node's time comes first,
to start the next read from. A changed file is read whole and replaces what was kept
of it, so a line half-written during one read is read again complete by the next. The
cost follows the pods asked for (the unfinished ones) and the files that changed,
never the finished pods. No inotify: the jobs write on compute nodes, whose writes the
login node's inotify does not see on NFS or Lustre. A pod's event log (`naming.EVENT_LOG`,
where the batch system writes one on the login node) is read the same way, beside its
status files; its times are the login node's local time, hence the UTC offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vkpy.backends.batch import naming, records
from vkpy.backends.batch.naming import Layout
from vkpy.errors import BackendUnavailable
from vkpy.transport import Runner

# Files modified this long before the last read began are read again: the compute
# nodes (or the file server) that set the times may run this far behind the login node.
CLOCK_SLACK_SECONDS = 10

# $1: the event log's path under a pod's directory (`naming.EVENT_LOG`). stdin: groups
# "<since>\0<count>\0<status dir>\0..."; prints the time and the UTC offset, "gone:<dir>"
# for a directory that no longer exists, then "path:line" for each line of a changed
# status file or event log.
READ = r"""export LC_ALL=C
date '+%s %z'
while IFS= read -r -d '' since && IFS= read -r -d '' count; do
  paths=()
  while [ "$count" -gt 0 ] && IFS= read -r -d '' dir; do
    if [ -d "$dir" ]; then
      paths+=("$dir"); [ ! -f "${dir%/status}/$1" ] || paths+=("${dir%/status}/$1")
    else
      printf 'gone:%s\n' "$dir"
    fi
    count=$((count - 1))
  done
  [ "${#paths[@]}" -eq 0 ] ||
    find "${paths[@]}" -maxdepth 1 -type f -newermt "@$since" -exec grep -a -H '' {} + 2>/dev/null
done
exit 0
"""

# Every pod's status files and event log under the node's base ($1), for the first
# listing (what a restarted agent adopts).
DISCOVER = r"""export LC_ALL=C
date '+%s %z'
find "$1" -mindepth 3 -maxdepth 3 -type f \( -path '*/status/*' -o -path "*/$2" \) \
  -exec grep -a -H '' {} + 2>/dev/null
exit 0
"""

Lines = dict[str, list[str]]  # a pod's status files: name → lines


def read_argv() -> list[str]:
    return ["bash", "-c", READ, "status-read", naming.EVENT_LOG]


def read_stdin(groups: Mapping[int, Sequence[str]]) -> bytes:
    """The directories to read, by the time from which their changes count."""
    out = bytearray()
    for since, dirs in sorted(groups.items()):
        out += b"%d\0%d\0" % (since, len(dirs))
        for directory in dirs:
            out += directory.encode() + b"\0"
    return bytes(out)


@dataclass(frozen=True)
class Clock:
    """The login node's time (epoch seconds) and its offset from UTC (seconds)."""

    now: int
    utc_offset: int


def parse_clock(line: str) -> Clock | None:
    """``date '+%s %z'``: "1733300000 +0100" (a time alone: UTC)."""
    words = line.split()
    if not 1 <= len(words) <= 2 or not words[0].isdecimal():
        return None
    zone = re.fullmatch(r"([+-])(\d\d)(\d\d)", words[1] if len(words) == 2 else "+0000")
    if zone is None:
        return None
    offset = int(zone[2]) * 3600 + int(zone[3]) * 60
    return Clock(int(words[0]), -offset if zone[1] == "-" else offset)


def parse(output: str, layout: Layout) -> tuple[Clock | None, dict[str, Lines], set[str]]:
    """The login node's clock, the changed files by pod UID, and the pods whose status
    directory is gone."""
    lines = output.splitlines()
    now = parse_clock(lines[0]) if lines else None
    gone = {
        where[0]
        for line in lines[1:]
        if line.startswith("gone:")
        and (where := layout.uid_of_status_file(line[5:] + "/_")) is not None
    }
    return now, records.status_lines(lines[1:], layout), gone


class StatusTail:
    """What was read of each unfinished pod's status files, and from when to read on."""

    def __init__(self) -> None:
        self.files: dict[str, Lines] = {}
        self.since: dict[str, int] = {}  # login-node time from which changes count
        self.parsed: dict[str, records.PodFiles] = {}  # what `files` say, until one changes
        self.utc_offset = 0  # the login node's, as of the last read (event logs' times)

    async def discover(self, runner: Runner, layout: Layout) -> dict[str, records.PodFiles]:
        """Every pod's files, read whole (the first listing)."""
        argv = ["bash", "-c", DISCOVER, "status-discover", layout.base, naming.EVENT_LOG]
        answer = await runner.run(argv, idempotent=True)
        clock, changed, _ = parse(answer.text, layout)
        if clock is None:
            raise BackendUnavailable(f"cannot read the work directories: {answer.describe()}")
        self.utc_offset = clock.utc_offset
        for uid, lines in changed.items():
            self.files[uid] = lines
            self.since[uid] = clock.now - CLOCK_SLACK_SECONDS
        return {uid: records.pod_files(lines) for uid, lines in changed.items()}

    async def read(
        self, runner: Runner, layout: Layout, uids: Iterable[str]
    ) -> dict[str, records.PodFiles]:
        """The files of ``uids``, reading only what changed since each one's last read;
        what is kept of other pods is dropped."""
        wanted = set(uids)
        for uid in set(self.files) - wanted:
            self.forget(uid)
        if not wanted:
            return {}
        groups: dict[int, list[str]] = {}
        for uid in sorted(wanted):
            groups.setdefault(self.since.get(uid, 0), []).append(layout.status(uid))
        answer = await runner.run(read_argv(), stdin=read_stdin(groups), idempotent=True)
        clock, changed, gone = parse(answer.text, layout)
        if clock is None:
            raise BackendUnavailable(f"cannot read the status files: {answer.describe()}")
        self.utc_offset = clock.utc_offset
        for uid in wanted:
            if uid in gone:
                self.forget(uid)
                continue
            kept = self.files.setdefault(uid, {})
            if uid in changed:
                kept.update(changed[uid])
                self.parsed.pop(uid, None)
            self.since[uid] = clock.now - CLOCK_SLACK_SECONDS
        found = {}
        for uid in wanted:
            if self.files.get(uid):
                if uid not in self.parsed:
                    self.parsed[uid] = records.pod_files(self.files[uid])
                found[uid] = self.parsed[uid]
        return found

    def forget(self, uid: str) -> None:
        self.files.pop(uid, None)
        self.parsed.pop(uid, None)
        self.since.pop(uid, None)
