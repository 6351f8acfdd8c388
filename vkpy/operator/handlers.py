"""The kopf handlers: every VirtualNode's agent started, restarted on a spec change,
stopped behind a finalizer on delete, and its status written as it changes.

A VirtualNode that cannot run (an invalid spec, a missing Secret, a failing agent)
says why in its own status and Events; the operator and the other nodes go on.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import kopf

from vkpy.config import Settings
from vkpy.errors import BackendError, ConfigError, KubeApiError
from vkpy.kube.client import Kube
from vkpy.operator import crd, drain, secrets, status, translate
from vkpy.operator.fleet import BackendFactory, Fleet

logger = logging.getLogger(__name__)

FINALIZER = "vkpy.io/virtualnode"
RESOURCE = (crd.GROUP, crd.VERSION, crd.PLURAL)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _identity(body: kopf.Body) -> tuple[str, str, str, dict[str, Any]]:
    """namespace/name, name, namespace and a plain copy of the spec."""
    name, namespace = str(body.metadata.name), str(body.metadata.namespace)
    return f"{namespace}/{name}", name, namespace, dict(body.spec)


class Handlers:
    """What the handlers share: the fleet, the operator's defaults, the API client."""

    def __init__(
        self,
        kube: Kube,
        fleet: Fleet,
        defaults: translate.Defaults,
        build: BackendFactory,
    ) -> None:
        self.kube = kube
        self.fleet = fleet
        self.defaults = defaults
        self.build = build

    def register(self, registry: kopf.OperatorRegistry, *, status_seconds: float) -> None:
        for decorator in (kopf.on.resume, kopf.on.create):
            decorator(*RESOURCE, registry=registry)(self.apply)
        kopf.on.update(*RESOURCE, field="spec", registry=registry)(self.apply)
        kopf.on.delete(*RESOURCE, registry=registry)(self.delete)
        kopf.timer(*RESOURCE, interval=status_seconds, registry=registry)(self.report)

    async def _settings(
        self, key: str, name: str, namespace: str, spec: dict[str, Any]
    ) -> tuple[Settings, str]:
        node_name = translate.node_name(name, spec)
        slot = self.fleet.claim(key, node_name)
        refs = translate.secret_refs(spec)
        directory = self.defaults.state_dir / "nodes" / node_name / "secrets"
        try:
            files, digest = await secrets.materialise(self.kube, namespace, refs, directory)
        except ConfigError as exc:
            raise kopf.TemporaryError(f"SecretUnavailable: {exc}", delay=15) from exc
        settings = translate.node_settings(
            name=name, spec=spec, port=slot.port, secret_files=files, defaults=self.defaults
        )
        return settings, digest

    async def apply(self, *, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        key, name, namespace, spec = _identity(body)
        node_name = translate.node_name(name, spec)
        try:
            translate.on_delete(spec)
            settings, digest = await self._settings(key, name, namespace, spec)
        except ConfigError as exc:  # fixed only by a new spec: no retry
            self.fleet.fail(key, node_name, "InvalidSpec", str(exc))
            kopf.warn(body, reason="InvalidSpec", message=str(exc))
            self._write(body, patch)
            return
        except kopf.TemporaryError as exc:
            self.fleet.fail(key, node_name, "SecretUnavailable", str(exc))
            kopf.warn(body, reason="SecretUnavailable", message=str(exc))
            self._write(body, patch)
            raise
        slot = self.fleet.slots[key]
        if await self.fleet.run(slot, settings, digest):
            logger.info(
                "VirtualNode %s: node %s started, kubelet port %d", key, node_name, slot.port
            )
            kopf.info(body, reason="AgentStarted", message=f"node {node_name}, port {slot.port}")
        self._write(body, patch)

    async def delete(self, *, body: kopf.Body, **_: Any) -> None:
        key, _name, _namespace, spec = _identity(body)
        slot = await self.fleet.stop(key)
        policy = spec.get("on_delete", "Drain")
        if slot is None or slot.settings is None:
            logger.info("VirtualNode %s deleted; it ran no node", key)
            return
        if policy == "Orphan":
            logger.info("VirtualNode %s deleted: node %s orphaned", key, slot.node_name)
            return
        try:
            stopped = await drain.drain(self.kube, self.build(slot.settings), slot.node_name)
        except (BackendError, KubeApiError) as exc:
            kopf.warn(body, reason="DrainFailed", message=str(exc))
            raise kopf.TemporaryError(f"drain of node {slot.node_name}: {exc}", delay=10) from exc
        logger.info("VirtualNode %s deleted: node %s drained (%s)", key, slot.node_name, stopped)

    def _write(self, body: kopf.Body, patch: kopf.Patch) -> None:
        slot = self.fleet.slots.get(_identity(body)[0])
        if slot is None:
            return
        previous = dict(body.status)
        new = status.status(slot.view(body.metadata.get("generation")), previous, now=_now())
        patch.status.update(status.changes(new, previous))

    async def report(self, *, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        self._write(body, patch)


def configure(settings: kopf.OperatorSettings, *, state_dir: Path) -> None:
    """kopf's bookkeeping in vkpy.io annotations, and our own finalizer; status holds
    only vkpy's fields (the CRD's schema prunes anything else)."""
    del state_dir
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="vkpy.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="vkpy.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO  # kopf.info/warn above; kopf.objects logs WARNING+
    # One resource, known, in exact namespaces: no scan of namespaces or CRDs, so the
    # ServiceAccount needs no rights to list either.
    settings.scanning.disabled = True
