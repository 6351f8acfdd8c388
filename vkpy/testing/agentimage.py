"""``make image``: the agent's OCI image, built without any container registry.

The Containerfile's base image lives in a registry these machines cannot reach, so the
same image is made another way:
1. A root filesystem from Debian's archive: ``debootstrap --variant=minbase bookworm``
   with python3 and python3-venv (cached as a tarball; Debian's Python is 3.11, like
   the host's, so the wheels the host builds fit).
2. vkpy's wheel and its dependencies' wheels, built on the host with pip, installed in
   a venv at /opt/vkpy inside the root filesystem (``chroot``), then removed.
3. The Containerfile's user (uid 10001, home /var/lib/vkpy) added in the root
   filesystem, and ``podman import`` with its USER, WORKDIR, ENTRYPOINT, CMD, EXPOSE
   and LABEL instructions, read from the Containerfile itself so the two cannot drift.
4. The image tagged ``localhost/vkpy:<version>`` and, for containerd, under the name a
   kubelet resolves ``vkpy:<version>`` to (``docker.io/library/vkpy:<version>``), and
   saved as an archive that ``ctr images import`` loads into a containerd.

The finished archive is cached too, keyed by the sources it was built from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vkpy.testing.errors import TestbedError

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv")
VENV = "/opt/vkpy"
# Directories a running agent never reads: docs, locales, package lists.
STRIPPED = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
)


@dataclass(frozen=True)
class ImageConfig:
    """What the Containerfile's final stage declares about the running image."""

    user: str = ""
    workdir: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def changes(self) -> list[str]:
        """``podman import --change`` instructions for this config."""
        out = [f"USER {self.user}", f"WORKDIR {self.workdir}"]
        out += [
            f"ENTRYPOINT {json.dumps(list(self.entrypoint))}",
            f"CMD {json.dumps(list(self.cmd))}",
        ]
        out += [f"EXPOSE {port}" for port in self.ports]
        out += [f"LABEL {key}={json.dumps(value)}" for key, value in self.labels.items()]
        out.append(
            f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        return out


@dataclass(frozen=True)
class Image:
    reference: str
    containerd_reference: str
    archive: Path


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    return lines


def _exec_form(value: str) -> tuple[str, ...]:
    value = value.strip()
    if value.startswith("["):
        return tuple(json.loads(value))
    return ("/bin/sh", "-c", value)


def parse_containerfile(text: str) -> ImageConfig:
    """The run-time settings of the last stage: what ``podman import`` must repeat."""
    stages: list[list[str]] = []
    for line in _logical_lines(text):
        if line.split(None, 1)[0].upper() == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(line)
    if not stages:
        raise TestbedError("the Containerfile has no FROM")
    settings: dict[str, object] = {"labels": {}, "ports": ()}
    for line in stages[-1]:
        instruction, _, value = line.partition(" ")
        keyword = instruction.upper()
        if keyword == "USER":
            settings["user"] = value.strip()
        elif keyword == "WORKDIR":
            settings["workdir"] = value.strip()
        elif keyword == "ENTRYPOINT":
            settings["entrypoint"] = _exec_form(value)
        elif keyword == "CMD":
            settings["cmd"] = _exec_form(value)
        elif keyword == "EXPOSE":
            settings["ports"] = (*settings["ports"], *value.split())  # type: ignore[misc]
        elif keyword == "LABEL":
            labels: dict[str, str] = settings["labels"]  # type: ignore[assignment]
            for pair in shlex.split(value):
                key, _, label = pair.partition("=")
                labels[key] = label
    return ImageConfig(**settings)  # type: ignore[arg-type]


def project_version(repo: Path = REPO) -> str:
    return str(tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"])


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vkpy" / "image"


def base_key(suite: str = SUITE, packages: Sequence[str] = PACKAGES) -> str:
    """Names the cached root filesystem by what went into it."""
    digest = hashlib.sha256(f"{suite} {MIRROR} {' '.join(sorted(packages))}".encode())
    return f"{suite}-minbase-{digest.hexdigest()[:12]}"


def source_key(repo: Path = REPO) -> str:
    """Names a finished image by the sources it holds: pyproject, Containerfile, vkpy/."""
    digest = hashlib.sha256()
    files = [
        repo / "pyproject.toml",
        repo / "Containerfile",
        *sorted((repo / "vkpy").rglob("*.py")),
    ]
    for path in files:
        digest.update(str(path.relative_to(repo)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _run(
    argv: Sequence[str],
    *,
    step: str,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> bytes:
    done = subprocess.run(list(argv), capture_output=True, env=env, input=stdin)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.decode(errors="replace").strip().splitlines()[-15:])
        raise TestbedError(f"make image: {step} failed (`{' '.join(argv[:4])} ...`):\n{tail}")
    return done.stdout


def base_rootfs(cache: Path) -> Path:
    """The debootstrapped root filesystem as a tarball; built once (a few minutes)."""
    tarball = cache / f"{base_key()}.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        raise TestbedError("debootstrap is missing: apt-get install -y debootstrap")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vkpy-rootfs-", dir=cache) as tmp:
        root = Path(tmp) / "root"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            step="debootstrap",
        )
        for stripped in STRIPPED:
            shutil.rmtree(root / stripped, ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        _run(["tar", "-C", str(root), "-cf", str(partial), "."], step="tar of the root filesystem")
        partial.rename(tarball)
    return tarball


def _wheels(directory: Path) -> None:
    """vkpy's wheel and its dependencies', from the host's venv pip (PyPI or its cache)."""
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(directory), str(REPO)],
        step="pip wheel",
    )


def _install(root: Path, config: ImageConfig) -> None:
    wheels = root / "wheels"
    _wheels(wheels)
    _run(["chroot", str(root), "python3", "-m", "venv", VENV], step="venv in the root filesystem")
    _run(
        [
            "chroot",
            str(root),
            f"{VENV}/bin/pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-compile",
            "--find-links",
            "/wheels",
            "vkpy",
        ],
        step="pip install in the root filesystem",
    )
    shutil.rmtree(wheels)
    shutil.rmtree(root / "root" / ".cache", ignore_errors=True)
    uid, _, gid = config.user.partition(":")
    home = config.workdir
    _run(
        ["chroot", str(root), "groupadd", "--gid", gid or uid, "vkpy"],
        step="groupadd in the root filesystem",
    )
    _run(
        [
            "chroot",
            str(root),
            "useradd",
            "--uid",
            uid,
            "--gid",
            gid or uid,
            "--no-create-home",
            "--home-dir",
            home,
            "--shell",
            "/usr/sbin/nologin",
            "vkpy",
        ],
        step="useradd in the root filesystem",
    )
    (root / home.lstrip("/")).mkdir(parents=True, exist_ok=True)
    os.chown(root / home.lstrip("/"), int(uid), int(gid or uid))


def build(*, podman_env: Mapping[str, str] | None = None, repo: Path = REPO) -> Image:
    """Build (or reuse) the image; return its names and the archive for containerd."""
    env = dict(podman_env if podman_env is not None else os.environ)
    config = parse_containerfile((repo / "Containerfile").read_text())
    version = project_version(repo)
    reference = f"localhost/vkpy:{version}"
    containerd_reference = f"docker.io/library/vkpy:{version}"
    cache = cache_dir()
    archive = cache / f"vkpy-{version}-{source_key(repo)}.tar"
    image = Image(reference, containerd_reference, archive)
    if archive.exists():
        if subprocess.run(["podman", "image", "exists", reference], env=env).returncode != 0:
            _run(["podman", "load", "--input", str(archive)], step="podman load", env=env)
        return image
    base = base_rootfs(cache)
    with tempfile.TemporaryDirectory(prefix="vkpy-image-", dir=cache) as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        _run(["tar", "-C", str(root), "-xf", str(base)], step="unpacking the root filesystem")
        _install(root, config)
        layer = Path(tmp) / "rootfs.tar"
        _run(["tar", "-C", str(root), "-cf", str(layer), "."], step="tar of the image")
        changes = [arg for change in config.changes() for arg in ("--change", change)]
        _run(["podman", "import", *changes, str(layer), reference], step="podman import", env=env)
    _run(["podman", "tag", reference, containerd_reference], step="podman tag", env=env)
    for stale in cache.glob(f"vkpy-{version}-*.tar"):
        stale.unlink()
    partial = archive.with_suffix(".partial")
    _run(
        [
            "podman",
            "save",
            "--format",
            "docker-archive",
            "--output",
            str(partial),
            "--multi-image-archive",
            reference,
            containerd_reference,
        ],
        step="podman save",
        env=env,
    )
    partial.rename(archive)
    return image


def import_into_containerd(archive: Path, socket: Path, namespace: str = "k8s.io") -> None:
    """Load the image archive into a containerd, in the namespace its CRI (the kubelet) uses."""
    _run(
        [
            "ctr",
            "--address",
            str(socket),
            "--namespace",
            namespace,
            "images",
            "import",
            str(archive),
        ],
        step="ctr images import",
    )
