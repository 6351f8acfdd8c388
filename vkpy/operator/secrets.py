"""Secret references written to files the agent reads: mode 0600, in the node's own
directory under the operator's state directory. Their values are never logged."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from vkpy.errors import ConfigError, KubeApiError
from vkpy.kube.client import Kube
from vkpy.operator.spec import SecretKeyRef


async def read_secret(kube: Kube, namespace: str, ref: SecretKeyRef) -> bytes:
    where = f"Secret {namespace}/{ref.name}"
    try:
        secret = await kube.get(f"/api/v1/namespaces/{namespace}/secrets/{ref.name}")
    except KubeApiError as exc:
        if exc.status == 404:
            raise ConfigError(f"{where} not found") from exc
        raise
    encoded = (secret.get("data") or {}).get(ref.key)
    if encoded is None:
        raise ConfigError(f"{where} has no key {ref.key!r}")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{where} key {ref.key!r} is not base64") from exc


def write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` with mode 0600 from the start, replacing it whole."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)
    partial.replace(path)


async def materialise(
    kube: Kube, namespace: str, refs: Mapping[str, SecretKeyRef | None], directory: Path
) -> tuple[dict[str, Path], str]:
    """Write each reference's value (None: empty) to ``directory``/<field>; return the
    files by field and a digest of their contents, so a changed Secret restarts the node."""
    files: dict[str, Path] = {}
    digest = hashlib.sha256()
    for field, ref in sorted(refs.items()):
        content = b"" if ref is None else await read_secret(kube, namespace, ref)
        path = directory / field
        write_private(path, content)
        files[field] = path
        digest.update(field.encode() + b"\0" + hashlib.sha256(content).digest())
    return files, digest.hexdigest()
