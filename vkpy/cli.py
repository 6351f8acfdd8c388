"""The ``vkpy`` command line."""

from __future__ import annotations

import argparse
import platform
import sys

from vkpy import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vkpy", description="A virtual kubelet that runs pods on Slurm, HTCondor and Podman."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("version", help="print the version and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"vkpy {__version__} (Python {platform.python_version()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
