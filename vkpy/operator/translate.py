"""A VirtualNode's spec into the `Settings` of its `Agent` (pure).

The spec holds the config file's keys; the operator adds what is its own: the node's
kubelet API port from its range, the node's state directory, and the files its Secret
references were written to. `Settings` then validates the whole, as it does a file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from vkpy.config import Settings, describe
from vkpy.errors import ConfigError
from vkpy.operator.spec import (
    OPERATOR_FIELDS,
    SSH_SECRET_FIELDS,
    OnDelete,
    Policy,
    SecretKeyRef,
    SshSecrets,
)


class NodeSettings(Settings):
    """`Settings` from a spec alone: the operator's ``VKPY_*`` environment would
    otherwise set the same field on every node."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@dataclass(frozen=True)
class Defaults:
    """What the operator gives every node unless its spec says otherwise."""

    state_dir: Path
    kubelet_address: str = "127.0.0.1"
    advertise_address: str | None = None


def _lookup(document: Mapping[str, Any], dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    value = document.get(head) if isinstance(document, Mapping) else None
    if value is None:
        return False
    return True if not rest else isinstance(value, Mapping) and _lookup(value, rest)


def _check_operator_fields(spec: Mapping[str, Any]) -> None:
    for dotted in OPERATOR_FIELDS:
        if _lookup(spec, dotted):
            raise ConfigError(f"spec.{dotted}: set by the operator, not in a VirtualNode")


def _ssh_secrets(spec: Mapping[str, Any]) -> SshSecrets | None:
    ssh = (spec.get("backend") or {}).get("ssh")
    if not isinstance(ssh, Mapping):
        return None
    try:
        return SshSecrets.model_validate({k: ssh[k] for k in SSH_SECRET_FIELDS if k in ssh})
    except ValidationError as exc:
        raise ConfigError(f"spec.backend.ssh: {describe(exc)}") from exc


def secret_refs(spec: Mapping[str, Any]) -> dict[str, SecretKeyRef | None]:
    """The spec's Secret references, by the field that holds them; None stands for an
    empty file (known_hosts without a Secret: never the operator's own)."""
    secrets = _ssh_secrets(spec)
    if secrets is None:
        return {}
    refs: dict[str, SecretKeyRef | None] = {"known_hosts_secret": secrets.known_hosts_secret}
    if secrets.key_secret is not None:
        refs["key_secret"] = secrets.key_secret
    return refs


def on_delete(spec: Mapping[str, Any]) -> OnDelete:
    try:
        return Policy.model_validate({"on_delete": spec.get("on_delete", "Drain")}).on_delete
    except ValidationError as exc:
        raise ConfigError(f"spec.{describe(exc)}") from exc


def node_name(name: str, spec: Mapping[str, Any]) -> str:
    """The Node's name: ``spec.node.name``, else the VirtualNode's own."""
    node = spec.get("node")
    given = node.get("name") if isinstance(node, Mapping) else None
    return str(given) if given else name


def node_settings(
    *,
    name: str,
    spec: Mapping[str, Any],
    port: int,
    secret_files: Mapping[str, Path],
    defaults: Defaults,
) -> Settings:
    """The agent's settings for VirtualNode ``name``; ``secret_files`` holds the file each
    Secret reference (by field, as `secret_refs` names them) was written to."""
    _check_operator_fields(spec)
    document: dict[str, Any] = copy.deepcopy(dict(spec))
    document.pop("on_delete", None)
    node = dict(document.get("node") or {})
    node["name"] = node_name(name, spec)
    node.setdefault("advertise_address", defaults.advertise_address)
    kubelet_api = dict(document.get("kubelet_api") or {})
    kubelet_api.setdefault("address", defaults.kubelet_address)
    kubelet_api.update(port=port, health_port=0)  # the operator serves the probes
    document.update(node=node, kubelet_api=kubelet_api)
    document["state_dir"] = str(defaults.state_dir / "nodes" / node["name"])
    backend = document.get("backend")
    if isinstance(backend, dict) and isinstance(backend.get("ssh"), dict):
        ssh = backend["ssh"]
        for field in SSH_SECRET_FIELDS:
            ssh.pop(field, None)
        if "key_secret" in secret_files:
            ssh["key_files"] = [str(secret_files["key_secret"])]
        ssh["known_hosts"] = str(secret_files["known_hosts_secret"])
        ssh.setdefault("use_agent", False)  # the operator's ssh-agent is not the node's
    try:
        return NodeSettings(**document)
    except ValidationError as exc:
        raise ConfigError(f"invalid spec: {describe(exc)}") from exc
