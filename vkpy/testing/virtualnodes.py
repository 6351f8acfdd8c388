"""The testbed's agent configs as VirtualNodes: what ``.testbed/virtualnodes.yaml``
holds, with the Secret they reference, for ``kubectl apply -f`` while
``vkpy operator --kubeconfig "$KUBECONFIG"`` runs.

A config moves into a VirtualNode's spec unchanged, except for the fields the
operator sets itself (dropped) and the SSH key and known_hosts files (a Secret).
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

from vkpy.operator.crd import GROUP, KIND, VERSION
from vkpy.operator.spec import OPERATOR_FIELDS

SSH_SECRET = "vkpy-testbed-ssh"  # noqa: S105 - the Secret's name
NAMESPACE = "default"


def _drop(document: dict[str, Any], dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if not rest:
        document.pop(head, None)
    elif isinstance(document.get(head), dict):
        _drop(document[head], rest)


def spec_from_config(config: dict[str, Any], *, secret: str = SSH_SECRET) -> dict[str, Any]:
    """A VirtualNode spec from an agent config; SSH files become references to ``secret``
    (keys ``id_ed25519`` and ``known_hosts``)."""
    spec = copy.deepcopy(config)
    ssh = (spec.get("backend") or {}).get("ssh")
    for dotted in OPERATOR_FIELDS:
        _drop(spec, dotted)
    if isinstance(ssh, dict):
        ssh["key_secret"] = {"name": secret, "key": "id_ed25519"}
        ssh["known_hosts_secret"] = {"name": secret, "key": "known_hosts"}
    return spec


def virtual_node(name: str, spec: dict[str, Any], *, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ssh_secret(
    key: Path, known_hosts: Path, *, name: str = SSH_SECRET, namespace: str = NAMESPACE
) -> dict[str, Any]:
    def encoded(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"id_ed25519": encoded(key), "known_hosts": encoded(known_hosts)},
    }


def write_virtual_nodes(
    path: Path, configs: dict[str, dict[str, Any]], *, key: Path, known_hosts: Path
) -> Path:
    """The Secret, then one VirtualNode per config (by node name), as one YAML stream."""
    documents = [ssh_secret(key, known_hosts)] + [
        virtual_node(config["node"]["name"], spec_from_config(config))
        for config in configs.values()
    ]
    header = (
        "# Written by `make testbed-up`: kubectl apply -f THIS while\n"
        '# vkpy operator --kubeconfig "$KUBECONFIG" runs (CRD: manifests/operator/).\n'
    )
    path.write_text(header + yaml.safe_dump_all(documents, sort_keys=False))
    path.chmod(0o600)
    return path
