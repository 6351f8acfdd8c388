"""The ``virtualnodes.vkpy.io`` CustomResourceDefinition, its schema generated from the
pydantic models that validate the agent's config, so the two never drift.

``python -m vkpy.operator.crd`` prints it; ``--write`` updates
manifests/operator/virtualnode-crd.yaml, which a unit test compares with `crd()`.

The models' JSON Schema becomes a structural OpenAPI v3 schema: references inlined,
``Optional`` as ``nullable``, the backend union as one object holding every kind's
fields (a structural schema allows no per-branch properties; pydantic checks the
per-kind fields), no defaults (pydantic applies them, and two kinds disagree on some).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from vkpy.config import Settings
from vkpy.operator.spec import OPERATOR_FIELDS, Policy, SshSecrets

GROUP = "vkpy.io"
VERSION = "v1alpha1"
KIND = "VirtualNode"
PLURAL = "virtualnodes"
MANIFEST = Path("manifests/operator/virtualnode-crd.yaml")

_DROPPED = ("title", "default", "discriminator", "format", "additionalProperties")


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline(merged, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _merge_union(branches: list[dict[str, Any]]) -> dict[str, Any]:
    """One object with every branch's properties; ``kind`` lists every branch's value."""
    properties: dict[str, Any] = {}
    kinds: list[str] = []
    for branch in branches:
        for name, prop in branch.get("properties", {}).items():
            if name == "kind":
                kinds.extend(prop["enum"])
            else:
                properties.setdefault(name, prop)
    kind = {"type": "string", "enum": kinds, "description": "The backend: " + ", ".join(kinds)}
    return {"type": "object", "properties": {"kind": kind, **properties}, "required": ["kind"]}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "oneOf" in node:  # the discriminated backend union
        described = {k: v for k, v in node.items() if k == "description"}
        node = {**_merge_union([_structural(b) for b in node["oneOf"]]), **described}
    if "anyOf" in node:  # Optional[X]: X, nullable
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        (only,) = options
        node = {**_structural(only), **node, "nullable": True}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if not isinstance(node.get("exclusiveMinimum", True), bool):  # 2020-12 form to 3.0
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    mapping = node.get("additionalProperties")
    result = {k: _structural(v) for k, v in node.items() if k not in _DROPPED}
    if isinstance(mapping, dict) and "properties" not in node:
        result["additionalProperties"] = _structural(mapping)
    if result.get("type") == "object" and "properties" in result:
        result.pop("additionalProperties", None)
        result["required"] = [r for r in result.get("required", []) if r in result["properties"]]
        if not result["required"]:
            result.pop("required")
    return result


def _remove(schema: dict[str, Any], dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    properties = schema.get("properties", {})
    if not rest:
        properties.pop(head, None)
        if head in schema.get("required", []):
            schema["required"].remove(head)
    elif head in properties:
        _remove(properties[head], rest)


def _model_properties(model: type[Any]) -> dict[str, Any]:
    schema = model.model_json_schema()
    inlined = _inline({k: v for k, v in schema.items() if k != "$defs"}, schema.get("$defs", {}))
    properties: dict[str, Any] = _structural(inlined)["properties"]
    return properties


def spec_schema() -> dict[str, Any]:
    """The openAPIV3Schema of ``spec``."""
    settings = Settings.model_json_schema()
    spec: dict[str, Any] = _structural(
        _inline({k: v for k, v in settings.items() if k != "$defs"}, settings["$defs"])
    )
    for dotted in OPERATOR_FIELDS:
        _remove(spec, dotted)
    ssh = spec["properties"]["backend"]["properties"]["ssh"]
    ssh["properties"].update(_model_properties(SshSecrets))
    spec["properties"].update(_model_properties(Policy))
    spec["description"] = (
        "The node's settings: the keys of vkpy's YAML config (node, backend, kubelet_api, "
        "timings), secrets as Secret references, and the delete policy."
    )
    spec["required"] = ["backend"]
    return spec


def _condition() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": text,
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": text,
            "message": text,
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    }


def status_schema() -> dict[str, Any]:
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    return {
        "type": "object",
        "properties": {
            "conditions": {
                "type": "array",
                "items": _condition(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "nodeName": {"type": "string", "description": "The Node this VirtualNode runs."},
            "nodeUID": {"type": "string"},
            "kubeletPort": {"type": "integer", "description": "Its kubelet API's port."},
            "pods": {**counts, "description": "The node's pods by phase."},
            "podCount": {"type": "integer"},
            "lastBackendError": {"type": "string"},
            "observedGeneration": {"type": "integer"},
        },
    }


def _column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["vn"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        _column("Backend", ".spec.backend.kind"),
                        _column("Node", ".status.nodeName"),
                        _column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
                        _column("Pods", ".status.podCount", "integer"),
                        _column("Age", ".metadata.creationTimestamp", "date"),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A virtual node that vkpy's operator runs.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m vkpy.operator.crd --write` from vkpy's config models.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vkpy.operator.crd", description=__doc__)
    parser.add_argument("--write", type=Path, nargs="?", const=MANIFEST, help="file to update")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(render())
    else:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
