"""``python -m vkpy.testing COMMAND``: the testbed from a shell or Makefile.

up, down, purge, binaries; worker (the real-kubelet node); image (``make image``);
deploy and undeploy (the agent as a Deployment on the worker node, Podman backend),
deploy-slurm and undeploy-slurm (the same with the Slurm backend).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from vkpy.testing import agentimage, incluster
from vkpy.testing.errors import TestbedError
from vkpy.testing.kubebinaries import (
    APISERVER_ONLY,
    BINARIES,
    KUBERNETES_VERSION,
    SPDY_APISERVER_VERSION,
    ensure_binaries,
    find_binaries,
)
from vkpy.testing.testbed import Testbed

# The control plane's binaries, and the older apiserver that speaks only SPDY to kubelets.
WANTED = ((KUBERNETES_VERSION, BINARIES), (SPDY_APISERVER_VERSION, APISERVER_ONLY))


def _binaries(version: str, binaries: tuple[str, ...]) -> str:
    found = find_binaries(version, binaries)
    if found is None:
        print(
            f"building {', '.join(binaries)} {version} from the Go module proxy "
            "(once; about 4 to 5 minutes on 2 cores)...",
            flush=True,
        )
        found = ensure_binaries(version, binaries)
    return str(found)


def _up(testbed: Testbed) -> None:
    start = time.monotonic()
    endpoints = testbed.up()
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in endpoints.timings.items())
    print(f"testbed up in {time.monotonic() - start:.1f}s ({parts})")
    print(f"use it with: . {testbed.state / 'env.sh'}")


def _worker(testbed: Testbed) -> None:
    start = time.monotonic()
    node = testbed.worker(testbed.up())
    found = ", ".join(f"{k} {v}" for k, v in node.versions.items())
    print(f"worker node {node.name} at {node.node_ip} Ready in {_since(start)} ({found})")


def _deploy(testbed: Testbed, overlay: incluster.Overlay = incluster.PODMAN) -> None:
    start = time.monotonic()
    endpoints = testbed.up()
    incluster.prepare(testbed, endpoints, testbed.worker(endpoints), overlay)
    deployed = incluster.deploy(endpoints, overlay)
    print(
        f"agent pod {overlay.namespace}/{deployed.pod} at {deployed.pod_ip} serves "
        f"virtual node {deployed.node}, Ready in {_since(start)}"
    )


def _undeploy(testbed: Testbed, overlay: incluster.Overlay = incluster.PODMAN) -> None:
    incluster.undeploy(testbed.up(), overlay)
    print(f"the agent's Deployment and virtual node {overlay.virtual_node} are deleted")


def _image(testbed: Testbed) -> None:
    start = time.monotonic()
    image = agentimage.build()
    print(f"image {image.reference} ({image.archive}) built in {_since(start)}")


def _down(testbed: Testbed) -> None:
    stopped = testbed.down()
    print(f"testbed down: stopped {', '.join(stopped) or 'nothing'}")


def _purge(testbed: Testbed) -> None:
    stopped = testbed.purge()
    print(f"testbed purged: stopped {', '.join(stopped) or 'nothing'}")


def _binaries_command(testbed: Testbed) -> None:
    for version, binaries in WANTED:
        print(f"Kubernetes {version} binaries: {_binaries(version, binaries)}")


def _since(start: float) -> str:
    return f"{time.monotonic() - start:.1f}s"


COMMANDS: dict[str, Callable[[Testbed], None]] = {
    "up": _up,
    "down": _down,
    "purge": _purge,
    "binaries": _binaries_command,
    "worker": _worker,
    "image": _image,
    "deploy": _deploy,
    "undeploy": _undeploy,
    "deploy-slurm": lambda bed: _deploy(bed, incluster.SLURM),
    "undeploy-slurm": lambda bed: _undeploy(bed, incluster.SLURM),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vkpy.testing", description=__doc__)
    parser.add_argument("command", choices=tuple(COMMANDS))
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](Testbed())
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
