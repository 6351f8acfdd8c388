"""The ``vkpy`` command line: ``run``, ``operator``, ``check-config``, ``version``.

Flags are named like the kubelet's (``--kubeconfig``, ``--node-name``) and override
the config file and the ``VKPY_*`` environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

from vkpy import __version__
from vkpy.config import Settings, load
from vkpy.errors import ConfigError, VkpyError

logger = logging.getLogger("vkpy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vkpy", description="A virtual kubelet that runs pods on Slurm, HTCondor and Podman."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="register the node and run its pods")
    run.add_argument("--config", type=Path, help="agent configuration (YAML)")
    run.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file; default: in-cluster service account, then $KUBECONFIG",
    )
    run.add_argument("--node-name", help="name of the virtual node (overrides node.name)")
    run.add_argument("--log-format", choices=("text", "json"), help="log record format")
    run.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    add_operator_parser(commands)
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path)
    commands.add_parser("version", help="print the version and exit")
    return parser


def add_operator_parser(commands: Any) -> None:
    operator = commands.add_parser("operator", help="run a virtual node per VirtualNode object")
    operator.add_argument("--kubeconfig", type=Path, help="as for run")
    operator.add_argument(
        "--namespace", action="append", default=[], help="watch only this namespace (repeatable)"
    )
    operator.add_argument(
        "--kubelet-port-range", default="10300-10399", help="one kubelet API port per node"
    )
    operator.add_argument("--kubelet-address", default="127.0.0.1", help="kubelet APIs listen here")
    operator.add_argument("--advertise-address", help="the Nodes' InternalIP (default: listen)")
    operator.add_argument("--state-dir", type=Path, help="the nodes' state and Secret files")
    operator.add_argument("--status-seconds", type=float, default=5.0)
    add_election_arguments(operator)
    operator.add_argument(
        "--liveness", help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    operator.add_argument(
        "--health-port", type=int, default=0, help="plain-HTTP /healthz here (0: off)"
    )
    operator.add_argument("--log-format", choices=("text", "json"), default="text")
    operator.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO"
    )


def add_election_arguments(operator: Any) -> None:
    """kube-controller-manager's leader-election flags (durations in seconds, or '15s')."""
    operator.add_argument(
        "--leader-elect", action="store_true", help="replicas: only a Lease's holder serves"
    )
    operator.add_argument("--leader-elect-lease-duration", type=seconds, default=15.0)
    operator.add_argument("--leader-elect-renew-deadline", type=seconds, default=10.0)
    operator.add_argument("--leader-elect-retry-period", type=seconds, default=2.0)
    operator.add_argument("--leader-elect-resource-name", default="vkpy-operator")
    operator.add_argument(
        "--leader-elect-resource-namespace", help="default: the pod's namespace, else default"
    )


def seconds(text: str) -> float:
    value = float(text.removesuffix("s"))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be positive")
    return value


def _election(args: argparse.Namespace) -> Any:
    from vkpy.kube.client import service_account_dir
    from vkpy.operator.election import Election, pod_namespace

    if not args.leader_elect:
        return None
    namespace = args.leader_elect_resource_namespace or pod_namespace(str(service_account_dir()))
    election = Election(
        name=args.leader_elect_resource_name,
        namespace=namespace or "default",
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
    )
    if not election.lease_duration > election.renew_deadline > 1.2 * election.retry_period:
        raise ConfigError(
            "--leader-elect-lease-duration must exceed --leader-elect-renew-deadline, "
            "which must exceed 1.2 x --leader-elect-retry-period"
        )
    return election


def _operator(args: argparse.Namespace) -> int:
    from vkpy.logsetup import configure
    from vkpy.operator.election import LeadershipLost
    from vkpy.operator.main import Options, run
    from vkpy.operator.ports import parse_range
    from vkpy.operator.translate import Defaults

    configure(args.log_level, args.log_format)
    state_dir = args.state_dir or Path(
        "/var/lib/vkpy-operator"
        if os.geteuid() == 0
        else Path.home() / ".local/state/vkpy-operator"
    )
    options = Options(
        kubeconfig=args.kubeconfig,
        defaults=Defaults(
            state_dir=state_dir,
            kubelet_address=args.kubelet_address,
            advertise_address=args.advertise_address,
        ),
        kubelet_ports=parse_range(args.kubelet_port_range),
        namespaces=tuple(args.namespace),
        status_seconds=args.status_seconds,
        election=_election(args),
        liveness=args.liveness,
        health_port=args.health_port,
    )
    try:
        asyncio.run(run(options))
    except LeadershipLost as exc:
        print(f"vkpy operator: {exc}; exiting so that another replica serves", file=sys.stderr)
        return 1
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.node_name:
        values["node"] = {"name": args.node_name}
    if args.log_format:
        values["log_format"] = args.log_format
    if args.log_level:
        values["log_level"] = args.log_level
    return values


async def _run(settings: Settings, kubeconfig: Path | None) -> None:
    from vkpy.agent import Agent, install_signal_handlers
    from vkpy.kube.client import Kube, connect
    from vkpy.metrics import count_kube_request
    from vkpy.wiring import build_backend

    kube = Kube(await connect(kubeconfig), on_request=count_kube_request)
    try:
        agent = Agent(settings, kube, build_backend(settings))
        install_signal_handlers(agent)
        await agent.run()
    finally:
        await kube.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"vkpy {__version__} (Python {platform.python_version()})")
        return 0
    try:
        if args.command == "operator":
            return _operator(args)
        if args.command == "check-config":
            settings = load(args.file)
            print(json.dumps(settings.model_dump(mode="json"), indent=2))
            print(f"{args.file}: valid", file=sys.stderr)
            return 0
        settings = load(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"vkpy: {exc}", file=sys.stderr)
        return 2
    from vkpy.logsetup import configure

    configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(_run(settings, args.kubeconfig))
    except ConfigError as exc:
        print(f"vkpy: {exc}", file=sys.stderr)
        return 2
    except VkpyError as exc:
        logger.error("stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
