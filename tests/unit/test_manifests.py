"""The agent's Deployment, as every overlay renders it, never runs on a virtual node."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def deployment(path: Path) -> dict:
    return next(
        d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Deployment"
    )


def test_the_agent_keeps_off_virtual_nodes():
    spec = deployment(ROOT / "manifests" / "deployment.yaml")["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (term,) = terms["nodeSelectorTerms"]
    assert {"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]} in term[
        "matchExpressions"
    ]


@pytest.mark.parametrize("overlay", sorted((ROOT / "examples" / "deploy").glob("*/")))
def test_no_overlay_replaces_the_affinity(overlay):
    for patch in overlay.glob("*.yaml"):
        for doc in yaml.safe_load_all(patch.read_text()):
            if doc and doc.get("kind") == "Deployment":
                assert "affinity" not in doc["spec"]["template"]["spec"], patch
