"""The fidelity corpus (vkpy/testing/fidelity): every case on the testbed's real kubelet
and on a vkpy Podman node at the same time, normalized statuses and event reasons
compared. The table goes to .testbed/fidelity-podman.md (the README's figures come
from it); a difference that vkpy/testing/fidelity/known.py does not list fails."""

import asyncio
import json

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.kube.client import Kube
from vkpy.testing.fidelity.corpus import CASES
from vkpy.testing.fidelity.report import Row, counts, problems, render_table
from vkpy.testing.fidelity.runner import flat_of, run_corpus

from .helpers import AgentProcess, running_agent

NODE = "vkpy-fidelity"


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


@pytest.mark.timeout(600)
async def test_the_corpus_reports_on_a_podman_node_what_a_real_kubelet_reports(
    testbed, worker_node, kube, tmp_path
):
    real_node = {"kubernetes.io/hostname": worker_node.name}
    real_tolerations = [{"key": worker_node.taint_key, "operator": "Exists"}]
    our_node = {"kubernetes.io/hostname": NODE, "type": "virtual-kubelet"}
    our_tolerations = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
    async with running_agent(kube, AgentProcess(testbed, tmp_path, NODE)):
        (real, real_seconds), (ours, our_seconds) = await asyncio.gather(
            run_corpus(
                kube, namespace="fid-real", node_selector=real_node, tolerations=real_tolerations
            ),
            run_corpus(
                kube, namespace="fid-vkpy", node_selector=our_node, tolerations=our_tolerations
            ),
        )
    rows = [Row(c.name, flat_of(real[c.name]), flat_of(ours[c.name])) for c in CASES]
    table = render_table(rows, candidate="vkpy podman")
    tally = counts(rows)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(worker_node.versions.items()))
    report = testbed.state / "fidelity-podman.md"
    report.write_text(
        f"# Fidelity corpus: real kubelet ({versions}) vs vkpy podman\n\n"
        f"{len(CASES)} cases: {tally['yes']} match, {tally['known']} differ as known, "
        f"{tally['NEW']} differ otherwise. One run: {real_seconds:.0f} s on the real node, "
        f"{our_seconds:.0f} s on vkpy, at the same time.\n\n{table}"
    )
    report.with_suffix(".json").write_text(
        json.dumps({"real kubelet": real, "vkpy podman": ours}, indent=1, sort_keys=True)
    )
    print(table)
    unsettled = [name for name, result in real.items() if result["outcome"] != "settled"]
    assert not unsettled, f"the corpus does not settle on a real kubelet: {unsettled}\n{table}"
    found = problems(rows)
    assert not found, "\n".join(found) + f"\n\n{table}"
