"""A pod's work directory on the cluster, through a runner: staging it, removing it
(reading its status files is `tail`). Every batch system runs the same job script in the same
layout (`naming`); reading logs is `logs`.
"""

from __future__ import annotations

import io
import math
import posixpath
import tarfile
import time
from collections.abc import Sequence

from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.podlog import PodLog
from vkpy.backends.batch.script import StagedFile
from vkpy.errors import BackendUnavailable, PodRejected
from vkpy.transport import Runner


def archive(
    root: str, dirs: Sequence[tuple[str, int]], files: Sequence[StagedFile], *, mtime: float
) -> bytes:
    """A tar archive of the work directory, paths relative to ``root``, each entry with
    its exact mode: directories first, shallowest first, then the files. Pure."""

    def member(path: str) -> str:
        relative = posixpath.relpath(path, root)
        if relative == "." or relative.startswith("../") or relative == "..":
            raise PodRejected(f"{path} is not under the work directory {root}")
        return relative

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, mode in sorted(dirs, key=lambda d: d[0].count("/")):
            entry = tarfile.TarInfo(member(path))
            entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, mode, mtime
            tar.addfile(entry)
        for staged in files:
            entry = tarfile.TarInfo(member(staged.path))
            entry.size, entry.mode, entry.mtime = len(staged.data), staged.mode, mtime
            tar.addfile(entry, io.BytesIO(staged.data))
    return buffer.getvalue()


def staging_root(dirs: Sequence[tuple[str, int]]) -> str:
    """The directory the archive is extracted in: the parent of the shallowest one."""
    if not dirs:
        raise PodRejected("nothing to stage: no work directory")
    return posixpath.dirname(min((d[0] for d in dirs), key=lambda p: p.count("/")))


def extract_argv(root: str) -> list[str]:
    """Extract the archive on stdin under ``root`` with its recorded modes."""
    return ["tar", "-x", "-p", "--no-same-owner", "-f", "-", "-C", root]


async def stage(
    runner: Runner, dirs: Sequence[tuple[str, int]], files: Sequence[StagedFile]
) -> None:
    """The work directory in one command: a tar archive on stdin, extracted with its
    modes (directories 0700, secrets 0600) whatever the login shell's umask. One command
    per pod, where a file at a time over SFTP was a dozen round trips."""
    root = staging_root(dirs)
    data = archive(root, dirs, files, mtime=time.time())
    answer = await runner.run(extract_argv(root), stdin=data, idempotent=True)
    if not answer.ok:
        raise BackendUnavailable(
            f"cannot write the work directory under {root}: {answer.describe()}"
        )


async def remove(
    runner: Runner,
    layout: Layout,
    uid: str,
    log: PodLog,
    *,
    retention_seconds: int,
    podman: str | None,
) -> None:
    """Remove (or, with a retention, move aside) the pod's work directory; ``podman``:
    the executable whose ``unshare`` removes files a container wrote as another user."""
    directory = layout.pod(uid)
    if retention_seconds:
        keep = [
            "sh",
            "-c",
            'mkdir -p -- "$2" && if [ -e "$1" ]; then '
            'rm -rf -- "$2/$3" && mv -- "$1" "$2/$3" && touch -- "$2/$3"; fi; '
            'find "$2" -mindepth 1 -maxdepth 1 -mmin "+$4" -exec rm -rf -- {} +',
            "sh",
            directory,
            layout.trash,
            uid,
            str(math.ceil(retention_seconds / 60)),
        ]
        answer = await runner.run(keep, idempotent=True)
    else:
        answer = await runner.run(["rm", "-rf", "--", directory], idempotent=True)
    if not answer.ok and podman is not None:
        unshare = [podman, "unshare", "rm", "-rf", "--", directory]
        answer = await runner.run(unshare, idempotent=True)
    if not answer.ok:
        log.warning("could not remove the work directory %s: %s", directory, answer.describe())
