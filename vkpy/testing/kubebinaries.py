"""Kubernetes control-plane binaries for the testbed.

No registry reachable from the test machines ships kube-apiserver as a binary, so
the binaries are built once from the ``k8s.io/kubernetes`` Go module at a pinned
version and cached outside the repository. ``KUBEBUILDER_ASSETS`` (the envtest
convention) points at binaries a user already has and skips the build.

``k8s.io/kubernetes`` cannot be ``go install``-ed directly: its go.mod replaces the
``k8s.io/*`` staging modules with local paths. A throw-away module requires it and
replaces each staging module with its published ``v0.Y.Z`` instead.

Two versions are built: the control plane's, and an older apiserver alone
(``SPDY_APISERVER_VERSION``): before 1.36 an apiserver never passes a WebSocket
on to a kubelet, so the kubelet API's SPDY path is proven against one.
``KUBEBUILDER_ASSETS`` stands for the control plane's version only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from vkpy.testing.errors import TestbedError

KUBERNETES_VERSION = "v1.36.3"
# The kubelet is the testbed worker node's (``worker``).
BINARIES = ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubelet")
# The last 1.33 patch release the Go module proxy serves; needs Go >= 1.24.
SPDY_APISERVER_VERSION = "v1.33.13"
APISERVER_ONLY = ("kube-apiserver",)
_REPLACE_LINE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", re.MULTILINE)


def cache_dir(version: str = KUBERNETES_VERSION) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vkpy" / "kubernetes" / version


def find_binaries(
    version: str = KUBERNETES_VERSION, binaries: tuple[str, ...] = BINARIES
) -> Path | None:
    """The directory holding ``binaries`` of ``version``, if they exist already."""
    assets = os.environ.get("KUBEBUILDER_ASSETS") if version == KUBERNETES_VERSION else None
    candidates = [Path(assets)] if assets else [cache_dir(version)]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in binaries):
            return directory
    if assets:
        missing = [n for n in binaries if not (Path(assets) / n).exists()]
        raise TestbedError(
            f"KUBEBUILDER_ASSETS={assets} lacks {', '.join(missing)}; "
            "unset it to build the binaries from the Go module proxy"
        )
    return None


def ensure_binaries(
    version: str = KUBERNETES_VERSION, binaries: tuple[str, ...] = BINARIES
) -> Path:
    """Return the binaries' directory, building them first when needed."""
    found = find_binaries(version, binaries)
    if found is not None:
        return found
    return build_binaries(version, binaries)


def _staging_modules(version: str, env: dict[str, str], workdir: Path) -> list[str]:
    info = _go(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], env, workdir)
    gomod = Path(json.loads(info)["GoMod"]).read_text()
    return sorted(set(_REPLACE_LINE.findall(gomod)))


def _go(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise TestbedError(
            f"`{' '.join(argv[:3])}` failed building Kubernetes {version_hint(argv)}:\n{tail}"
        )
    return proc.stdout


def version_hint(argv: list[str]) -> str:
    return next((a.split("@", 1)[1] for a in argv if "@" in a), "")


def go_environment() -> dict[str, str]:
    env = dict(os.environ)
    # Go >= 1.27 defaults to the new JSON encoder, which breaks the apiserver's OpenAPI.
    env["GOEXPERIMENT"] = "nojsonv2"
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def build_binaries(version: str = KUBERNETES_VERSION, binaries: tuple[str, ...] = BINARIES) -> Path:
    if shutil.which("go") is None:
        raise TestbedError(
            "Go is missing: install a Go toolchain (>= 1.24) to build the Kubernetes "
            "test binaries, or set KUBEBUILDER_ASSETS to a directory holding them"
        )
    target = cache_dir(version)
    env = go_environment()
    minor = version.split(".")[1]
    patch = version.split(".")[2]
    with tempfile.TemporaryDirectory(prefix="vkpy-kubebuild-") as tmp:
        work = Path(tmp)
        (work / "go.mod").write_text("module vkpy.local/kubebuild\n\ngo 1.24\n")
        staging = _staging_modules(version, env, work)
        replaces = "\n".join(f"\t{m} => {m} v0.{minor}.{patch}" for m in staging)
        (work / "go.mod").write_text(
            "module vkpy.local/kubebuild\n\ngo 1.24\n\n"
            f"require k8s.io/kubernetes {version}\n\nreplace (\n{replaces}\n)\n"
        )
        (work / "tools.go").write_text(
            "//go:build tools\n\npackage tools\n\n"
            + "".join(f'import _ "k8s.io/kubernetes/cmd/{b}"\n' for b in binaries)
        )
        _go(["go", "mod", "tidy"], env, work)
        staged = target.with_name(target.name + ".partial")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        ldflags = (
            f"-s -w -X k8s.io/component-base/version.gitVersion={version} "
            f"-X k8s.io/component-base/version.gitMajor=1 "
            f"-X k8s.io/component-base/version.gitMinor={minor} "
            "-X k8s.io/component-base/version.gitTreeState=clean"
        )
        _go(
            ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(staged)]
            + [f"k8s.io/kubernetes/cmd/{b}" for b in binaries],
            env,
            work,
        )
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    return target
