"""The VirtualNode CRD: generated from the config models, and the shipped file is it."""

from pathlib import Path
from typing import Any

import yaml

from vkpy.operator import crd
from vkpy.operator.spec import OPERATOR_FIELDS

ROOT = Path(__file__).resolve().parents[2]


def walk(schema: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    for part in dotted.split("."):
        schema = schema.get("properties", {}).get(part)
        if schema is None:
            return None
    return schema


def nodes(schema: Any):
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from nodes(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from nodes(value)


def test_the_shipped_crd_is_the_generated_one():
    shipped = yaml.safe_load((ROOT / crd.MANIFEST).read_text())
    assert shipped == crd.crd(), "run: python -m vkpy.operator.crd --write"


def test_the_schema_is_structural():
    spec = crd.spec_schema()
    for node in nodes(spec):
        assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node
        assert "default" not in node  # pydantic applies defaults, one place
        for bound in ("minimum", "maximum"):
            assert not isinstance(node.get(bound, 0), bool), node
        if "properties" in node:
            assert node["type"] == "object"
            assert "additionalProperties" not in node


def test_the_backend_holds_every_kind_and_its_fields():
    backend = walk(crd.spec_schema(), "backend")
    assert backend is not None
    assert backend["properties"]["kind"]["enum"] == ["podman", "slurm", "htcondor"]
    for field in ("socket", "partition", "submit_commands", "work_dir", "ssh"):
        assert field in backend["properties"], field


def test_operator_fields_are_gone_and_secrets_are_references():
    spec = crd.spec_schema()
    for dotted in OPERATOR_FIELDS:
        assert walk(spec, dotted) is None, dotted
    ssh = walk(spec, "backend.ssh")
    assert ssh is not None
    ref = ssh["properties"]["key_secret"]
    assert set(ref["properties"]) == {"name", "key"} and ref["required"] == ["name", "key"]
    assert "known_hosts_secret" in ssh["properties"]
    assert walk(spec, "on_delete")["enum"] == ["Drain", "Orphan"]


def test_bounds_and_optionals_in_openapi_v3_form():
    spec = crd.spec_schema()
    renew = walk(spec, "lease_renew_seconds")
    assert renew == {**renew, "type": "number", "minimum": 0, "exclusiveMinimum": True}
    address = walk(spec, "node.advertise_address")
    assert address["type"] == "string" and address["nullable"] is True


def test_printer_columns_read_at_a_glance():
    (version,) = crd.crd()["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Backend"] == ".spec.backend.kind"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert set(columns) == {"Backend", "Node", "Ready", "Pods", "Age"}
    assert version["subresources"] == {"status": {}}
