"""`make fidelity`: the fidelity corpus on the real kubelet and on vkpy's Slurm node.

The Slurm node is the agent deployed as in `tests/integration/test_deployment.py` (the
testbed's overlay of examples/deploy/slurm, on the worker node). The corpus runs on both
nodes at once; the table goes to .testbed/fidelity-slurm.md. Nothing fails here: the
Slurm backend's differences are listed, not yet held to a known list as the Podman
node's are in `make test` (tests/integration/test_fidelity_corpus.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from common import run
from kubernetes_asyncio import config

from vkpy.kube.client import Kube
from vkpy.testing import incluster
from vkpy.testing.fidelity.corpus import CASES
from vkpy.testing.fidelity.report import Row, render_table
from vkpy.testing.fidelity.runner import flat_of, run_corpus
from vkpy.testing.testbed import Endpoints, Testbed


async def corpus_on_slurm(endpoints: Endpoints, work: Path) -> dict[str, Any]:
    bed = Testbed(endpoints.state)
    worker = bed.worker(endpoints)
    incluster.prepare(bed, endpoints, worker, incluster.SLURM)
    deployed = await asyncio.to_thread(incluster.deploy, endpoints, incluster.SLURM)
    api = await config.new_client_from_config(config_file=str(endpoints.cluster.admin_kubeconfig))
    kube = Kube(api)
    try:
        (real, real_seconds), (ours, our_seconds) = await asyncio.gather(
            run_corpus(
                kube,
                namespace="fid-real-slurm",
                node_selector={"kubernetes.io/hostname": worker.name},
                tolerations=[{"key": worker.taint_key, "operator": "Exists"}],
            ),
            run_corpus(
                kube,
                namespace="fid-slurm",
                node_selector={"kubernetes.io/hostname": deployed.node},
                tolerations=[{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                timeout=240,
            ),
        )
    finally:
        await api.close()
        await asyncio.to_thread(incluster.undeploy, endpoints, incluster.SLURM)
    rows = [Row(c.name, flat_of(real[c.name]), flat_of(ours[c.name])) for c in CASES]
    matching = sum(1 for row in rows if not row.differences)
    fields = Counter(field for row in rows for field in row.differences)
    table = render_table(rows, candidate="vkpy slurm")
    (endpoints.state / "fidelity-slurm.md").write_text(
        f"# Fidelity corpus: real kubelet vs vkpy slurm\n\n{len(rows)} cases, {matching} match. "
        f"One run: {real_seconds:.0f} s on the real node, {our_seconds:.0f} s on vkpy.\n\n{table}"
    )
    return {
        "cases": len(rows),
        "matching": matching,
        "unsettled_on_slurm": [n for n, r in ours.items() if r["outcome"] != "settled"],
        "fields_that_differ": dict(fields.most_common()),
        "seconds": {"real kubelet": round(real_seconds), "vkpy slurm": round(our_seconds)},
    }


if __name__ == "__main__":
    run("fidelity-slurm", corpus_on_slurm)
