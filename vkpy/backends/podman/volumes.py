"""The pod's directory on the host: its volumes, and the container specs restarts use.

Layout, one directory per pod UID under the configured state directory::

    <state>/<uid>/                  0700, root of everything the pod keeps on the host
        containers.json             0600, container create bodies (env values included)
        volumes/<volume>/           emptyDir (0777) or staged files (0755)
    <memory_dir>/<uid>/<volume>/    emptyDir with medium Memory, on a tmpfs

Files get the modes the pod gives them (0644 unless it says otherwise), as the kubelet
writes them, so that a container user who is not root can read its own secret; other
users of the host are kept out by the pod's 0700 directory, as the kubelet's are by
/var/lib/kubelet/pods. With ``fsGroup`` the volumes' files and directories belong to that
group and are group-readable (the kubelet's SetVolumeOwnership), and the containers get it
as a supplementary group. File contents and env values are never logged. hostPath volumes
are bind-mounted where they are, and only from under the
configured allowed directories (symlinks resolved before the check).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from vkpy.backend import PodSpec, Volume
from vkpy.backends.podman.spec import HostVolume, check_uid
from vkpy.errors import UnsupportedPodFeature
from vkpy.jsontypes import JSON

logger = logging.getLogger(__name__)

SPECS = "containers.json"
POD_DIR_MODE = 0o700
EMPTY_DIR_MODE = 0o777
FILES_DIR_MODE = 0o755
GROUP_READ = 0o440  # added for fsGroup, as the kubelet's SetVolumeOwnership does (read-only)
GROUP_DIR = 0o2550  # setgid and group traversal for fsGroup's directories


def pod_dir(state_dir: Path, uid: str) -> Path:
    """The pod's own directory under the state directory."""
    return state_dir / check_uid(uid)


def _volume_name(volume: Volume) -> str:
    if not volume.name or "/" in volume.name or volume.name in {".", ".."}:
        raise UnsupportedPodFeature(f"volume name {volume.name!r} is not usable")
    return volume.name


def _under(path: str, roots: Sequence[str]) -> bool:
    for root in roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, path]) == real_root:
            return True
    return False


def plan(
    pod: PodSpec, *, pod_dir: Path, memory_dir: Path, allowed_host_paths: Sequence[str]
) -> dict[str, HostVolume]:
    """Where each of the pod's volumes lives on the host; refuses disallowed hostPaths."""
    check_uid(pod.uid)
    result: dict[str, HostVolume] = {}
    for volume in pod.volumes:
        name = _volume_name(volume)
        if volume.kind == "emptyDir":
            base = memory_dir / pod.uid if volume.medium == "Memory" else pod_dir / "volumes"
            result[name] = HostVolume(str(base / name))
        elif volume.kind == "files":
            result[name] = HostVolume(str(pod_dir / "volumes" / name), read_only=True)
        else:
            host_path = volume.host_path or ""
            if not os.path.isabs(host_path):
                raise UnsupportedPodFeature(f"hostPath {host_path!r} must be absolute")
            real = os.path.realpath(host_path)
            if not _under(real, allowed_host_paths):
                raise UnsupportedPodFeature(
                    f"hostPath {host_path!r} is not under an allowed directory "
                    f"({', '.join(allowed_host_paths) or 'none allowed'})"
                )
            result[name] = HostVolume(real)
    return result


def _write_file(
    root: Path, relative: str, content: bytes, mode: int, *, dir_mode: int, group: int | None
) -> None:
    parts = PurePosixPath(relative)
    if parts.is_absolute() or ".." in parts.parts or not parts.parts:
        raise UnsupportedPodFeature(f"file path {relative!r} must be relative to its volume")
    target = root.joinpath(*parts.parts)
    directory = root
    for part in parts.parts[:-1]:
        directory = directory / part
        directory.mkdir(mode=dir_mode, exist_ok=True)
        _own(directory, dir_mode, group, GROUP_DIR)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        if group is not None:
            os.fchown(descriptor, -1, group)
            mode |= GROUP_READ
        os.fchmod(descriptor, mode)  # whatever the umask said
        os.write(descriptor, content)
    finally:
        os.close(descriptor)


def _own(path: Path, mode: int, group: int | None, extra: int) -> None:
    """``mode`` for ``path``, with ``extra`` and owned by ``group`` when there is one."""
    if group is not None:
        os.chown(path, -1, group)
        mode |= extra
    path.chmod(mode)


def _make_dir(path: Path, mode: int) -> None:
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    path.chmod(mode)


def stage(pod: PodSpec, volumes: dict[str, HostVolume], *, pod_dir: Path) -> None:
    """Create the pod's directory, its emptyDirs and its files volumes (blocking I/O)."""
    _make_dir(pod_dir, POD_DIR_MODE)
    _make_dir(pod_dir / "volumes", POD_DIR_MODE)
    for volume in pod.volumes:
        source = Path(volumes[volume.name].source)
        if volume.kind == "emptyDir":
            if volume.medium == "Memory":
                _make_dir(source.parent, POD_DIR_MODE)
            _make_dir(source, EMPTY_DIR_MODE)
        elif volume.kind == "files":
            _make_dir(source, FILES_DIR_MODE)
            _own(source, FILES_DIR_MODE, pod.fs_group, GROUP_DIR)
            for file in volume.files:
                _write_file(
                    source,
                    file.path,
                    file.content,
                    file.mode & 0o777,
                    dir_mode=FILES_DIR_MODE,
                    group=pod.fs_group,
                )
            logger.debug(
                "staged %d file(s) of volume %s for pod %s", len(volume.files), volume.name, pod.key
            )
    # Kubernetes creates a missing subPath inside an emptyDir; Podman refuses to mount one.
    kinds = {volume.name: volume.kind for volume in pod.volumes}
    for container in (*pod.init_containers, *pod.containers):
        for mount in container.mounts:
            if mount.sub_path and kinds.get(mount.volume) == "emptyDir":
                relative = PurePosixPath(mount.sub_path)
                if relative.is_absolute() or ".." in relative.parts:
                    raise UnsupportedPodFeature(f"subPath {mount.sub_path!r} must be relative")
                sub = Path(volumes[mount.volume].source).joinpath(*relative.parts)
                _make_dir(sub, EMPTY_DIR_MODE)


def save_specs(pod_dir: Path, bodies: dict[str, JSON]) -> None:
    """Keep the container create bodies (they hold env values: 0600) for restarts."""
    _make_dir(pod_dir, POD_DIR_MODE)
    path = pod_dir / SPECS
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(bodies, handle)


def load_specs(pod_dir: Path) -> dict[str, JSON] | None:
    """The saved create bodies, or None when the pod's directory has none."""
    try:
        loaded = json.loads((pod_dir / SPECS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s: %s", pod_dir / SPECS, exc)
        return None
    return loaded if isinstance(loaded, dict) else None


def remove(pod_dir: Path, memory_dir: Path) -> None:
    """Remove everything the pod kept on the host; what is missing already is fine."""
    for directory in (pod_dir, memory_dir):
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(directory)
