"""PodSpec → everything its job needs: files to stage, the batch script, the submission.

Pure: `render` does no I/O, and raises `PodRejected` for a pod that cannot run (a
forbidden flag, a bad path, an unknown volume) before anything is staged or submitted.
What it returns is data: directories and files with their modes, and argv lists. Pod
values reach the cluster only inside files (each container's argv and environment,
NUL-separated, mode 0600) and as quoted argv elements, never as shell text. Each batch
system adds its own submit command (and any file it reads, such as a submit
description) with `submission`.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from vkpy.backend import RESTART_BACKOFF_INITIAL, Container, PodSpec, RestartPolicy, Volume
from vkpy.backends.batch import naming, runtime
from vkpy.backends.batch.config import BatchConfig
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.records import PodMeta
from vkpy.backends.batch.runtime import Bind, RuntimeOptions
from vkpy.backends.batch.template import TEMPLATE
from vkpy.errors import PodRejected, UnsupportedPodFeature

DIR_MODE = 0o700
PRIVATE_MODE = 0o600
VOLUME_DIR_MODE = 0o755  # what a container's non-root user needs to read its files
EMPTY_DIR_MODE = 0o777  # as Kubernetes makes emptyDirs; the pod's directory is 0700
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# In a bind specification (src:dst:opts) and on the wire, these would change its meaning.
_PATH_FORBIDDEN = (":", ",", "\n", "\r", "\0")


@dataclass(frozen=True)
class StagedFile:
    path: str
    data: bytes = field(repr=False)  # may be secret: never in reprs or logs
    mode: int = PRIVATE_MODE


@dataclass(frozen=True)
class Grouped:
    """How a pod joins others in one submit command (`bulk`): the pods with the same
    ``key`` share one description, ``head`` then each pod's ``item`` then ``tail``,
    which ``argv`` (with the description's path added) submits as one cluster whose
    jobs follow the items' order."""

    key: str
    argv: tuple[str, ...]
    head: bytes
    item: bytes
    tail: bytes


@dataclass(frozen=True)
class Submission:
    """What create() stages and runs for one pod."""

    uid: str
    pod_dir: str
    dirs: tuple[tuple[str, int], ...]  # (path, mode), parents first
    files: tuple[StagedFile, ...]
    command: tuple[str, ...]  # the batch system's submit argv (sbatch ...); `bulk` runs it
    existing: tuple[str, ...]  # the argv that prints the pod's job id, if it has one
    script: str
    group: Grouped | None = None  # None: submitted alone, with ``command``


@dataclass(frozen=True)
class Settings:
    """What rendering needs from the configuration."""

    node: str
    runtime: RuntimeOptions
    kill_wait_seconds: int = 30
    allowed_host_paths: tuple[str, ...] = ()
    backoff_seconds: int = int(RESTART_BACKOFF_INITIAL)  # the kubelet's; tests shorten it
    # The script runs in whatever directory the job starts in, a copy of the pod's
    # (HTCondor's file transfer), not in the pod's directory itself.
    relocatable: bool = False

    @classmethod
    def from_config(cls, config: BatchConfig, *, node: str, relocatable: bool = False) -> Settings:
        return cls(
            node=node,
            runtime=RuntimeOptions.from_config(config),
            kill_wait_seconds=config.kill_wait_seconds,
            allowed_host_paths=tuple(config.allowed_host_paths),
            relocatable=relocatable,
        )


# ---------------------------------------------------------------- checks


def _check_identity(pod: PodSpec) -> None:
    naming.check_uid(pod.uid)
    if not _DNS_LABEL.match(pod.namespace) or len(pod.namespace) > 63:
        raise PodRejected(f"namespace {pod.namespace!r} is not a DNS label")
    if not _DNS_SUBDOMAIN.match(pod.name) or len(pod.name) > 253:
        raise PodRejected(f"pod name {pod.name!r} is not a DNS subdomain")
    names = [c.name for c in (*pod.init_containers, *pod.containers)]
    for name in names:
        naming.check_container_name(name)
    if len(set(names)) != len(names):
        raise PodRejected("two containers of the pod have the same name")
    if not pod.containers:
        raise PodRejected("the pod has no containers")
    for volume in pod.volumes:
        if not _DNS_LABEL.match(volume.name) or len(volume.name) > 63:
            raise PodRejected(f"volume name {volume.name!r} is not a DNS label")


def _check_stdio(pod: PodSpec) -> None:
    """A job's containers run with stdin from /dev/null and no terminal: a pod that asks
    for either would run without it, so it is refused instead."""
    for container in (*pod.init_containers, *pod.containers):
        asked = [what for what, on in (("stdin", container.stdin), ("tty", container.tty)) if on]
        if asked:
            raise UnsupportedPodFeature(
                f"container {container.name}: {' and '.join(asked)} cannot be given: a batch "
                "job runs its containers with stdin from /dev/null and no terminal "
                "(kubectl exec works without them)"
            )


def _check_path(path: str, what: str) -> str:
    if any(c in path for c in _PATH_FORBIDDEN):
        raise PodRejected(f"{what} {path!r} holds a character vkpy cannot pass (: , newline)")
    return path


def _relative(path: str, what: str) -> str:
    """``path`` when it stays inside its root: relative, no ``..``."""
    _check_path(path, what)
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PodRejected(f"{what} {path!r} must be a relative path without '..'")
    return path


def _absolute(path: str, what: str) -> str:
    _check_path(path, what)
    if not path.startswith("/"):
        raise PodRejected(f"{what} {path!r} must be an absolute path")
    return posixpath.normpath(path)


def _under(path: str, roots: Sequence[str]) -> bool:
    for root in roots:
        normal = posixpath.normpath(root)
        if posixpath.commonpath([normal, path]) == normal:
            return True
    return False


# ---------------------------------------------------------------- volumes


def _volume_dir(pod_dir: str, volume: str) -> str:
    return f"{pod_dir}/volumes/{volume}"


def _binds(
    container: Container, volumes: dict[str, Volume], *, root: str, allowed: Sequence[str]
) -> list[Bind]:
    """The container's mounts; a volume of the pod is under ``root`` ("": relative)."""
    binds = []
    for mount in container.mounts:
        volume = volumes.get(mount.volume)
        if volume is None:
            raise PodRejected(f"container {container.name} mounts unknown volume {mount.volume}")
        destination = _absolute(mount.path, f"mount path of {container.name}")
        sub = _relative(mount.sub_path, "subPath") if mount.sub_path else ""
        if volume.kind == "hostPath":
            host = _absolute(volume.host_path or "", f"hostPath of volume {volume.name}")
            if not _under(host, allowed):
                raise PodRejected(
                    f"hostPath {host} of volume {volume.name} is not under an allowed "
                    f"directory ({', '.join(allowed) or 'none are allowed'})"
                )
            source = host
        else:
            source = _volume_dir(root, volume.name) if root else f"volumes/{volume.name}"
        if sub:
            source = f"{source}/{sub}"
        read_only = mount.read_only or volume.kind == "files"
        binds.append(Bind(source, destination, read_only))
    return binds


def _stage_volumes(
    pod: PodSpec, pod_dir: str
) -> tuple[list[tuple[str, int]], list[StagedFile], list[str], list[str]]:
    """Directories and files to stage, memory emptyDirs, emptyDir subPaths to make."""
    dirs: list[tuple[str, int]] = []
    files: list[StagedFile] = []
    memory: list[str] = []
    subdirs: list[str] = []
    for volume in pod.volumes:
        root = _volume_dir(pod_dir, volume.name)
        if volume.kind == "files":
            dirs.append((root, VOLUME_DIR_MODE))
            made = set()
            for item in volume.files:
                relative = _relative(item.path, f"file of volume {volume.name}")
                parent = posixpath.dirname(relative)
                walked = ""
                for part in parent.split("/") if parent else ():
                    walked = f"{walked}/{part}" if walked else part
                    if walked not in made:
                        made.add(walked)
                        dirs.append((f"{root}/{walked}", VOLUME_DIR_MODE))
                # The pod's mode; the pod's 0700 directory keeps other users out.
                files.append(StagedFile(f"{root}/{relative}", item.content, item.mode & 0o777))
        elif volume.kind == "emptyDir":
            if volume.medium == "Memory":
                memory.append(volume.name)
            else:
                dirs.append((root, EMPTY_DIR_MODE))
    kinds = {v.name: v.kind for v in pod.volumes}
    for container in (*pod.init_containers, *pod.containers):
        for mount in container.mounts:
            if kinds.get(mount.volume) == "emptyDir" and mount.sub_path:
                subdirs.append(f"{mount.volume}/{_relative(mount.sub_path, 'subPath')}")
    return dirs, files, memory, sorted(set(subdirs))


# ---------------------------------------------------------------- the job


def nul_joined(words: Sequence[str]) -> bytes:
    return b"".join(word.encode("utf-8", errors="surrogateescape") + b"\0" for word in words)


def _bash_array(words: Sequence[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def _init_policy(policy: RestartPolicy) -> RestartPolicy:
    """Init containers restart on failure unless the pod never restarts anything."""
    return "Never" if policy == "Never" else "OnFailure"


def _shares_node_network(pod: PodSpec, settings: Settings) -> bool:
    """Whether the pod's IP is the compute node's: it is unless Podman gives it none."""
    return (
        settings.runtime.kind != "podman" or pod.host_network or settings.runtime.network == "host"
    )


def script_text(
    pod: PodSpec,
    *,
    settings: Settings,
    pod_dir: str,
    deadline: int,
    memory: Sequence[str],
    subdirs: Sequence[str],
) -> str:
    values = {
        "POD": f"{pod.namespace}/{pod.name}",
        "UID": pod.uid,
        "NODE": settings.node,
        "DIR": "." if settings.relocatable else shlex.quote(pod_dir),
        "UID_Q": shlex.quote(pod.uid),
        "GRACE": str(max(0, int(pod.termination_grace_period_seconds))),
        "KILL_WAIT": str(settings.kill_wait_seconds),
        "DEADLINE": str(deadline),
        "RESTART": pod.restart_policy,
        "INIT_RESTART": _init_policy(pod.restart_policy),
        "BACKOFF": str(max(1, settings.backoff_seconds)),
        "RUNTIME": settings.runtime.kind,
        "RUNTIME_BIN": shlex.quote(settings.runtime.executable),
        "INIT": _bash_array([c.name for c in pod.init_containers]),
        "APPS": _bash_array([c.name for c in pod.containers]),
        "MEMORY": _bash_array(memory),
        "SUBDIRS": _bash_array(subdirs),
        "NODE_IP_IS_POD_IP": "1" if _shares_node_network(pod, settings) else "0",
    }
    return re.sub(r"@([A-Z_]+)@", lambda m: values[m[1]], TEMPLATE)


@dataclass(frozen=True)
class Prepared:
    """A pod's work directory, whatever the batch system: what to stage, and the script."""

    uid: str
    pod_dir: str
    dirs: tuple[tuple[str, int], ...]  # (path, mode), parents first
    files: tuple[StagedFile, ...]
    script: str


def prepare(pod: PodSpec, *, layout: Layout, settings: Settings, now: float) -> Prepared:
    """The job script and the files of ``pod``'s work directory; ``now`` starts its
    activeDeadlineSeconds."""
    _check_identity(pod)
    _check_stdio(pod)
    pod_dir = layout.pod(pod.uid)
    volumes = {v.name: v for v in pod.volumes}
    volume_dirs, volume_files, memory, subdirs = _stage_volumes(pod, pod_dir)
    root = pod_dir
    if settings.relocatable:  # binds under the job's directory; it makes the emptyDirs
        root = ""
        empty = [v.name for v in pod.volumes if v.kind == "emptyDir" and v.name not in memory]
        subdirs = sorted({*subdirs, *empty})
    files: list[StagedFile] = []
    for container in (*pod.init_containers, *pod.containers):
        binds = _binds(container, volumes, root=root, allowed=settings.allowed_host_paths)
        run = runtime.launch(
            container,
            uid=pod.uid,
            options=settings.runtime,
            binds=binds,
            gpus=container.resources.gpus,
            host_network=pod.host_network,
        )
        files.append(StagedFile(f"{pod_dir}/spec/{container.name}.argv", nul_joined(run.argv)))
        files.append(StagedFile(f"{pod_dir}/spec/{container.name}.env", nul_joined(run.env)))
        image = nul_joined([container.image])  # for the ID the kubelet shows (`template`)
        files.append(StagedFile(f"{pod_dir}/spec/{container.name}.image", image))
        if run.relative:
            indices = "".join(f"{i}\n" for i in run.relative).encode()
            files.append(StagedFile(f"{pod_dir}/spec/{container.name}.rel", indices))
    deadline = 0
    if pod.active_deadline_seconds is not None:
        deadline = int(now) + max(0, int(pod.active_deadline_seconds))
    script = script_text(
        pod, settings=settings, pod_dir=pod_dir, deadline=deadline, memory=memory, subdirs=subdirs
    )
    meta = PodMeta(
        namespace=pod.namespace,
        name=pod.name,
        init=tuple(c.name for c in pod.init_containers),
        containers=tuple(c.name for c in pod.containers),
        images={c.name: c.image for c in (*pod.init_containers, *pod.containers)},
        restart_policy=pod.restart_policy,
        reports_ip=_shares_node_network(pod, settings),
        stamped_logs=True,
    )
    files.append(StagedFile(f"{pod_dir}/status/{naming.META}", meta.to_json().encode() + b"\n"))
    files.append(StagedFile(f"{pod_dir}/job.sh", script.encode(), DIR_MODE))
    files.extend(volume_files)
    dirs = [(pod_dir, DIR_MODE)]
    dirs += [(f"{pod_dir}/{sub}", DIR_MODE) for sub in ("spec", "status", "logs", "run", "volumes")]
    dirs += volume_dirs
    return Prepared(pod.uid, pod_dir, tuple(dirs), tuple(files), script)


def submission(
    prepared: Prepared,
    command: Sequence[str],
    *,
    existing: Sequence[str],
    extra: Sequence[StagedFile] = (),
    group: Grouped | None = None,
) -> Submission:
    """``prepared`` submitted with ``command`` (the batch system's argv), ``extra``
    files staged beside it; ``existing`` prints the pod's job id if it has one."""
    return Submission(
        group=group,
        uid=prepared.uid,
        pod_dir=prepared.pod_dir,
        dirs=prepared.dirs,
        files=(*prepared.files, *extra),
        command=tuple(command),
        existing=tuple(existing),
        script=prepared.script,
    )
