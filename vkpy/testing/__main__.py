"""``python -m vkpy.testing up|down|purge|binaries``: the testbed from a shell or Makefile."""

from __future__ import annotations

import argparse
import sys
import time

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vkpy.testing", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "purge", "binaries", "worker"))
    args = parser.parse_args(argv)
    testbed = Testbed()
    try:
        if args.command == "binaries":
            for version, binaries in WANTED:
                print(f"Kubernetes {version} binaries: {_binaries(version, binaries)}")
        elif args.command == "up":
            start = time.monotonic()
            endpoints = testbed.up()
            parts = ", ".join(f"{k} {v:.1f}s" for k, v in endpoints.timings.items())
            print(f"testbed up in {time.monotonic() - start:.1f}s ({parts})")
            print(f"use it with: . {testbed.state / 'env.sh'}")
        elif args.command == "worker":
            start = time.monotonic()
            node = testbed.worker(testbed.up())
            found = ", ".join(f"{k} {v}" for k, v in node.versions.items())
            print(
                f"worker node {node.name} at {node.node_ip} Ready in "
                f"{time.monotonic() - start:.1f}s ({found})"
            )
        elif args.command == "purge":
            stopped = testbed.purge()
            print(f"testbed purged: stopped {', '.join(stopped) or 'nothing'}")
        else:
            stopped = testbed.down()
            print(f"testbed down: stopped {', '.join(stopped) or 'nothing'}")
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
