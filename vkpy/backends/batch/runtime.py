"""How a container runs inside the job: the runtime's argv and environment. Pure.

The result is data, never shell text: the job script reads each container's argv and
environment from NUL-separated files and runs ``env -- ENV... ARGV...``, so no value
passes through a shell, and no secret is written into the batch script (which Slurm
keeps in its state).

Environment values travel in the runtime's own environment, which only the job's user
can read, not in its argv, which every user of the node can see in ``ps``:

- Apptainer / Singularity: ``APPTAINERENV_NAME=value`` (``SINGULARITYENV_``) with
  ``--cleanenv``: the runtime sets ``NAME`` in the container and nothing else leaks in.
- Podman: ``NAME=value`` in Podman's environment and ``--env=NAME`` on its command
  line (Podman copies the value in). Names Podman itself reads (PATH, HOME, XDG_*,
  TMPDIR, CONTAINERS_*...) would change how Podman runs, so those few go on the
  command line as ``--env=NAME=value`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vkpy.backend import Container, PullPolicy
from vkpy.backends.batch.config import BatchConfig
from vkpy.backends.batch.naming import check_uid
from vkpy.errors import PodRejected

RuntimeKind = Literal["apptainer", "singularity", "podman"]

_PODMAN_PULL: dict[PullPolicy, str] = {
    "Always": "always",
    "IfNotPresent": "missing",
    "Never": "never",
}
# Variables Podman (or the libraries under it) read about itself.
_PODMAN_OWN = frozenset(
    [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TMPDIR",
        "TZ",
        "LANG",
        "LANGUAGE",
        "TERM",
        "container",
        "NOTIFY_SOCKET",
        "DBUS_SESSION_BUS_ADDRESS",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ]
)
_PODMAN_OWN_PREFIXES = (
    "XDG_",
    "CONTAINERS_",
    "CONTAINER_",
    "_CONTAINERS",
    "STORAGE_",
    "BUILDAH_",
    "PODMAN_",
    "REGISTRY_",
    "DOCKER_",
    "LD_",
    "GO",
    "LC_",
    "SLURM_",
    "http_",
    "https_",
    "no_",
    "ftp_",
    "HTTP_",
    "HTTPS_",
    "NO_",
    "FTP_",
)
_IMAGE_SCHEMES = ("docker://", "oras://", "library://", "shub://", "docker-archive:", "oci:")


@dataclass(frozen=True)
class Bind:
    """A path of the compute node bound into a container; a relative ``source`` is
    under the directory the job script runs in."""

    source: str
    destination: str
    read_only: bool = False


@dataclass(frozen=True)
class RuntimeOptions:
    kind: RuntimeKind
    executable: str  # the runtime's program on the compute nodes
    flags: tuple[str, ...] = ()  # the site's extra flags for every container
    network: Literal["host", "none"] = "host"  # podman only

    @classmethod
    def from_config(cls, config: BatchConfig) -> RuntimeOptions:
        return cls(
            kind=config.runtime,
            executable=config.runtime_path or config.runtime,
            flags=tuple(config.runtime_flags),
            network=config.podman_network,
        )


@dataclass(frozen=True)
class Launch:
    """One container as the job script runs it."""

    argv: tuple[str, ...]
    env: tuple[str, ...]  # NAME=VALUE entries for the runtime's environment
    # Indices of bind options (``--volume=SRC:...``) whose SRC is relative: the job
    # script makes it absolute under the directory it runs in (`Bind.source`).
    relative: tuple[int, ...] = ()


def podman_container_name(uid: str, container: str) -> str:
    return f"vkpy-{uid}-{container}"


def pod_environment(container: Container) -> dict[str, str]:
    """The container's variables (a later duplicate wins, as in Kubernetes), checked."""
    env: dict[str, str] = {}
    for var in container.env:
        if not var.name or "=" in var.name or "\0" in var.name:
            raise PodRejected(f"container {container.name}: invalid variable name {var.name!r}")
        if "\0" in var.value:
            raise PodRejected(
                f"container {container.name}: variable {var.name} holds a NUL byte, "
                "which no process environment can carry"
            )
        env.pop(var.name, None)
        env[var.name] = var.value
    for word in (*container.command, *container.args):
        if "\0" in word:
            raise PodRejected(f"container {container.name}: an argument holds a NUL byte")
    return env


def podman_owns(name: str) -> bool:
    """Whether Podman reads ``name`` itself (or, with a ``*``, would import host variables
    matching it): such a variable goes on its command line, not in its environment."""
    return name in _PODMAN_OWN or name.startswith(_PODMAN_OWN_PREFIXES) or "*" in name


def _podman(
    container: Container,
    *,
    uid: str,
    options: RuntimeOptions,
    binds: Sequence[Bind],
    gpus: int,
    host_network: bool,
) -> Launch:
    env = pod_environment(container)
    argv = [
        options.executable,
        "run",
        "--replace",
        f"--name={podman_container_name(uid, container.name)}",
        f"--network={'host' if host_network else options.network}",
        f"--pull={_PODMAN_PULL[container.image_pull_policy]}",
    ]
    passed: list[str] = []
    for name, value in env.items():
        if podman_owns(name):
            argv.append(f"--env={name}={value}")
        else:
            argv.append(f"--env={name}")
            passed.append(f"{name}={value}")
    relative = _add_binds(argv, "--volume", binds)
    if container.working_dir:
        argv.append(f"--workdir={container.working_dir}")
    if gpus:
        argv.append("--device=nvidia.com/gpu=all")
    if container.command:
        argv.append(f"--entrypoint={json.dumps(list(container.command))}")
    argv.extend(options.flags)
    argv.append(container.image)
    argv.extend(container.args)
    return Launch(tuple(argv), tuple(passed), tuple(relative))


def _add_binds(argv: list[str], flag: str, binds: Sequence[Bind]) -> list[int]:
    """Append one ``flag=source:destination:mode`` a bind; the positions of those whose
    source is relative to the pod directory (resolved by the job script at run time)."""
    relative = []
    for bind in binds:
        if not bind.source.startswith("/"):
            relative.append(len(argv))
        argv.append(f"{flag}={bind.source}:{bind.destination}:{'ro' if bind.read_only else 'rw'}")
    return relative


def apptainer_image(image: str) -> str:
    """An image reference Apptainer understands: registry images get ``docker://``."""
    if image.startswith(_IMAGE_SCHEMES) or image.startswith("/"):
        return image
    return f"docker://{image}"


def _apptainer(
    container: Container,
    *,
    options: RuntimeOptions,
    binds: Sequence[Bind],
    gpus: int,
) -> Launch:
    env = pod_environment(container)
    prefix = "SINGULARITYENV_" if options.kind == "singularity" else "APPTAINERENV_"
    argv = [
        options.executable,
        "exec" if container.command else "run",
        "--containall",
        "--writable-tmpfs",
    ]
    relative = _add_binds(argv, "--bind", binds)
    if container.working_dir:
        argv.append(f"--pwd={container.working_dir}")
    if gpus:
        argv.append("--nv")
    argv.extend(options.flags)
    argv.append(apptainer_image(container.image))
    argv.extend(container.command)
    argv.extend(container.args)
    environment = tuple(f"{prefix}{n}={v}" for n, v in env.items())
    return Launch(tuple(argv), environment, tuple(relative))


def launch(
    container: Container,
    *,
    uid: str,
    options: RuntimeOptions,
    binds: Sequence[Bind],
    gpus: int = 0,
    host_network: bool = False,
) -> Launch:
    """The argv and environment that run ``container`` under the configured runtime."""
    if options.kind == "podman":
        return _podman(
            container,
            uid=uid,
            options=options,
            binds=binds,
            gpus=gpus,
            host_network=host_network,
        )
    return _apptainer(container, options=options, binds=binds, gpus=gpus)


# Runs a command (if any), then removes every container named for the given pods (the
# names carry the pod UID), and exits with the command's status. For pods whose job is
# over: a job SIGKILLed before its trap ran leaves its containers to conmon.
_SWEEP = (
    'runtime=$1; n=$2; shift 2; uids=""; '
    'while [ "$n" -gt 0 ]; do uids="$uids $1"; shift; n=$((n - 1)); done; '
    'rc=0; if [ "$#" -gt 0 ]; then "$@"; rc=$?; fi; '
    "for uid in $uids; do "
    'ids=$("$runtime" ps --all --quiet --filter "name=^vkpy-$uid-"); '
    '[ -z "$ids" ] || "$runtime" rm --force --time 0 $ids > /dev/null; '
    "done; exit $rc"
)


def sweep_argv(
    options: RuntimeOptions, uids: Sequence[str], first: Sequence[str] = ()
) -> tuple[str, ...]:
    """``first`` (say, scancel), then stop and remove what is left of ``uids``'
    containers on the host the command runs on. Only Podman's containers outlive their
    job: Apptainer's and Singularity's are the job's own processes, which the batch
    system kills with it, so for those this is ``first`` alone."""
    if options.kind != "podman" or not uids:
        return tuple(first)
    checked = [check_uid(uid) for uid in uids]  # UUIDs: safe in the filter and unquoted
    return ("sh", "-c", _SWEEP, "sh", options.executable, str(len(checked)), *checked, *first)
