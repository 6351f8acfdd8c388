"""The fast clock: the status files of the node's unfinished pods, read by what changed.

One remote command per read, touching only the filesystem (never the scheduler):
``find`` picks the files of the asked pods modified since the pod's last read (less a
slack for clocks), ``grep`` prints only those, and the login node's time comes first,
to start the next read from. A changed file is read whole and replaces what was kept
of it, so a line half-written during one read is read again complete by the next. The
cost follows the pods asked for (the unfinished ones) and the files that changed,
never the finished pods. No inotify: the jobs write on compute nodes, whose writes the
login node's inotify does not see on NFS or Lustre.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from vkpy.backends.batch import records
from vkpy.backends.batch.naming import Layout
from vkpy.errors import BackendUnavailable
from vkpy.transport import Runner

# Files modified this long before the last read began are read again: the compute
# nodes (or the file server) that set the times may run this far behind the login node.
CLOCK_SLACK_SECONDS = 10

# stdin: groups "<since>\0<count>\0<dir>\0..." ; prints the time, "gone:<dir>" for a
# directory that no longer exists, then "path:line" for each line of a changed file.
READ = r"""export LC_ALL=C
date +%s
while IFS= read -r -d '' since && IFS= read -r -d '' count; do
  dirs=()
  while [ "$count" -gt 0 ] && IFS= read -r -d '' dir; do
    if [ -d "$dir" ]; then dirs+=("$dir"); else printf 'gone:%s\n' "$dir"; fi
    count=$((count - 1))
  done
  [ "${#dirs[@]}" -eq 0 ] ||
    find "${dirs[@]}" -maxdepth 1 -type f -newermt "@$since" -exec grep -a -H '' {} + 2>/dev/null
done
exit 0
"""

# Every pod's status files under the node's base (what a restarted agent adopts).
DISCOVER = r"""export LC_ALL=C
date +%s
find "$1" -mindepth 3 -maxdepth 3 -path '*/status/*' -type f -exec grep -a -H '' {} + 2>/dev/null
exit 0
"""

Lines = dict[str, list[str]]  # a pod's status files: name → lines


def read_argv() -> list[str]:
    return ["bash", "-c", READ, "status-read"]


def read_stdin(groups: Mapping[int, Sequence[str]]) -> bytes:
    """The directories to read, by the time from which their changes count."""
    out = bytearray()
    for since, dirs in sorted(groups.items()):
        out += b"%d\0%d\0" % (since, len(dirs))
        for directory in dirs:
            out += directory.encode() + b"\0"
    return bytes(out)


def parse(output: str, layout: Layout) -> tuple[int | None, dict[str, Lines], set[str]]:
    """The login node's time, the changed files by pod UID, and the pods whose status
    directory is gone."""
    lines = output.splitlines()
    now = int(lines[0]) if lines and lines[0].strip().isdecimal() else None
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

    async def discover(self, runner: Runner, layout: Layout) -> dict[str, records.PodFiles]:
        """Every pod's files, read whole (the first listing)."""
        answer = await runner.run(
            ["bash", "-c", DISCOVER, "status-discover", layout.base], idempotent=True
        )
        now, changed, _ = parse(answer.text, layout)
        if now is None:
            raise BackendUnavailable(f"cannot read the work directories: {answer.describe()}")
        for uid, lines in changed.items():
            self.files[uid] = lines
            self.since[uid] = now - CLOCK_SLACK_SECONDS
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
        now, changed, gone = parse(answer.text, layout)
        if now is None:
            raise BackendUnavailable(f"cannot read the status files: {answer.describe()}")
        for uid in wanted:
            if uid in gone:
                self.forget(uid)
                continue
            kept = self.files.setdefault(uid, {})
            if uid in changed:
                kept.update(changed[uid])
                self.parsed.pop(uid, None)
            self.since[uid] = now - CLOCK_SLACK_SECONDS
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
