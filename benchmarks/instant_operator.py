"""`vkpy operator` with the instant backend behind every VirtualNode, for `make bench`.

Usage: python benchmarks/instant_operator.py STATE_DIR PORTS NAMESPACE
Each VirtualNode's spec names a real backend kind, which the CRD requires; this
process runs the in-process instant backend in its place, so the figures measure the
operator, its agents and the API server alone. Credentials come from $KUBECONFIG.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from vkpy.backend import Backend
from vkpy.config import Settings
from vkpy.logsetup import configure
from vkpy.operator.main import Options, run
from vkpy.operator.ports import parse_range
from vkpy.operator.translate import Defaults
from vkpy.testing.instant import InstantBackend


def instant(settings: Settings) -> Backend:
    del settings
    return InstantBackend()


def main(state_dir: Path, ports: str, namespace: str) -> None:
    options = Options(
        kubeconfig=None,
        defaults=Defaults(state_dir=state_dir),
        kubelet_ports=parse_range(ports),
        namespaces=(namespace,),
        build=instant,
    )
    asyncio.run(run(options))


if __name__ == "__main__":
    configure("WARNING", "text")
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
