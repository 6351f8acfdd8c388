"""An in-memory Kubernetes API for unit tests: a `Kube` whose requests never leave the process.

It keeps objects by path and answers what the agent asks, as the apiserver does:
GET of an object or a list (``fieldSelector`` on dotted fields, e.g. ``spec.nodeName``),
watch streams from a resourceVersion (410 once `expire_watches` was called), create
(409 on a name taken), merge patches of an object or its ``status`` subresource (a
``metadata.uid`` in the patch is a precondition), strategic patches approximated (lists
of conditions merged by type, other lists replaced), PUT, and DELETE with preconditions
(uid, resourceVersion) and a grace period: a pod bound to a node is only marked
(``deletionTimestamp``) unless the grace is 0, everything else goes at once. Errors are
`KubeApiError` with the status and message shape `vkpy.kube.client.Kube` raises.
Every request is recorded in `requests`; `fail` makes the next matching ones fail.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from vkpy.errors import KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kube.client import MERGE_PATCH, STRATEGIC_MERGE_PATCH, Kube
from vkpy.kube.times import rfc3339

Key = tuple[str, str, str, str]  # (API prefix, plural, namespace, name)


@dataclass(frozen=True)
class Target:
    """A path taken apart: ``/api/v1/namespaces/ns/pods/web/status``."""

    prefix: str  # /api/v1, /apis/coordination.k8s.io/v1
    plural: str
    namespace: str  # "" for cluster-scoped objects, and for lists across namespaces
    name: str  # "" for a collection
    subresource: str  # "status", "token", ...

    @property
    def key(self) -> Key:
        return (self.prefix, self.plural, self.namespace, self.name)


def target(path: str) -> Target:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        prefix, rest = "/api/" + parts[1], parts[2:]
    elif parts[:1] == ["apis"]:
        prefix, rest = "/apis/" + "/".join(parts[1:3]), parts[3:]
    else:
        raise KubeApiError(
            f"{path}: 404 the server could not find the requested resource", status=404
        )
    namespace = ""
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    rest += [""] * (3 - len(rest))
    return Target(prefix, rest[0], namespace, rest[1], rest[2])


def merged(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


def strategic(base: Any, patch: Any) -> Any:
    """Enough of a strategic merge patch for node status: conditions merge by type."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return merged(base, patch)
    result = dict(base)
    for key, value in patch.items():
        old = result.get(key)
        if value is None:
            result.pop(key, None)
        elif key in ("conditions", "addresses") and isinstance(old, list):
            field = "type"
            by_kind = {item.get(field): item for item in old}
            for item in value:
                by_kind[item.get(field)] = merged(by_kind.get(item.get(field)), item)
            result[key] = list(by_kind.values())
        else:
            result[key] = strategic(old, value)
    return result


def _field(obj: JSON, dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _selected(obj: JSON, selector: str | None) -> bool:
    for term in (selector or "").split(","):
        if not term:
            continue
        field, _, wanted = term.partition("=")
        negate = field.endswith("!")
        value = _field(obj, field.rstrip("!"))
        if (str(value or "") == wanted) == negate:
            return False
    return True


def _error(method: str, path: str, status: int, message: str) -> KubeApiError:
    return KubeApiError(f"{method} {path}: {status} {message}", status=status)


class MemKube(Kube):
    """A `Kube` backed by dicts in memory."""

    def __init__(self) -> None:
        super().__init__(cast(Any, None))
        self.objects: dict[Key, JSON] = {}
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, body)
        self._versions = itertools.count(1)
        self.version = 0
        self._events: list[tuple[int, Key, str, JSON]] = []  # (version, key, type, object)
        self._tick = asyncio.Event()
        self._generation = 0  # bumped by expire_watches
        self._compacted = 0  # versions before this one are gone
        self._faults: list[list[Any]] = []  # [method, path fragment, status, times]

    @property
    def ca_file(self) -> str | None:
        return None

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------ test helpers

    def fail(self, method: str, fragment: str, *, status: int = 500, times: int = 1) -> None:
        """The next ``times`` requests of ``method`` to a path containing ``fragment`` fail."""
        self._faults.append([method, fragment, status, times])

    def expire_watches(self) -> None:
        """Every open watch, and every watch from an older version, ends with 410 Gone,
        as after an etcd compaction; a list afterwards gives a version to watch from."""
        self.version = self._compacted = next(self._versions)
        self._generation += 1
        self._wake()

    def object(self, path: str) -> JSON | None:
        found = self.objects.get(target(path).key)
        return copy.deepcopy(found) if found is not None else None

    def sent(self, method: str, path: str) -> list[Any]:
        """The bodies of the requests of ``method`` to exactly ``path``."""
        return [body for m, p, body in self.requests if m == method and p == path]

    # ------------------------------------------------------------ the Kube interface

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        if self._on_request is not None:
            self._on_request(method, path)
        self.requests.append((method, path, copy.deepcopy(body)))
        await asyncio.sleep(0)  # a request is a suspension point, as on the network
        for fault in self._faults:
            if fault[0] == method and fault[1] in path and fault[3] > 0:
                fault[3] -= 1
                raise _error(method, path, fault[2], "injected by the test")
        where = target(path)
        if method == "GET":
            return self._list(where, query or {}) if not where.name else self._get(method, path)
        if method == "POST":
            return self._create(method, path, where, body)
        if method == "PATCH":
            return self._patch(method, path, where, body, content_type)
        if method == "PUT":
            return self._put(method, path, where, body)
        if method == "DELETE":
            return self._delete(method, path, where, body or {})
        raise _error(method, path, 405, "method not allowed")

    async def stream(
        self, path: str, *, query: Mapping[str, Any], read_timeout: float
    ) -> AsyncIterator[JSON]:
        self.requests.append(("WATCH", path, dict(query)))
        where, generation = target(path), self._generation
        since = int(query.get("resourceVersion") or 0)
        index = next((i for i, e in enumerate(self._events) if e[0] > since), len(self._events))
        while True:
            tick = self._tick
            if generation != self._generation or since < self._compacted:
                yield {"type": "ERROR", "object": {"code": 410, "message": "too old"}}
                return
            while index < len(self._events):
                _, key, kind, obj = self._events[index]
                index += 1
                if self._in(where, key) and _selected(obj, query.get("fieldSelector")):
                    yield {"type": kind, "object": copy.deepcopy(obj)}
            await tick.wait()

    # ------------------------------------------------------------ verbs

    def _get(self, method: str, path: str) -> JSON:
        where = target(path)
        found = self.objects.get(where.key)
        if found is None:
            raise _error(method, path, 404, f'{where.plural} "{where.name}" not found')
        return copy.deepcopy(found)

    @staticmethod
    def _in(where: Target, key: Key) -> bool:
        return key[:2] == (where.prefix, where.plural) and where.namespace in ("", key[2])

    def _list(self, where: Target, query: Mapping[str, Any]) -> JSON:
        items = [
            copy.deepcopy(obj)
            for key, obj in self.objects.items()
            if self._in(where, key) and _selected(obj, query.get("fieldSelector"))
        ]
        return {"kind": "List", "metadata": {"resourceVersion": str(self.version)}, "items": items}

    def _create(self, method: str, path: str, where: Target, body: JSON) -> JSON:
        if where.subresource == "token":  # a TokenRequest
            return {**body, "status": {"token": f"memkube-token-{uuid.uuid4().hex[:8]}"}}
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = (where.prefix, where.plural, where.namespace, meta.get("name", ""))
        if key in self.objects:
            raise _error(method, path, 409, f'{where.plural} "{key[3]}" already exists')
        if where.namespace:
            meta["namespace"] = where.namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", rfc3339(datetime.now(UTC)))
        return self._store(key, obj, "ADDED")

    def _patch(self, method: str, path: str, where: Target, body: JSON, kind: str) -> JSON:
        current = self._get(method, path)
        wanted_uid = (body.get("metadata") or {}).get("uid")
        if wanted_uid and wanted_uid != current["metadata"].get("uid"):
            raise _error(
                method,
                path,
                409,
                f"Precondition failed: UID in precondition: {wanted_uid}, "
                f"UID in object meta: {current['metadata'].get('uid')}",
            )
        if kind not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
            raise _error(method, path, 415, f"unsupported media type {kind}")
        if where.subresource == "status":  # the status subresource writes the status only
            patch = {"status": body["status"]} if "status" in body else {}
        else:  # and the object itself anything but its status
            patch = {k: v for k, v in body.items() if k != "status" or where.plural != "pods"}
        apply = strategic if kind == STRATEGIC_MERGE_PATCH else merged
        return self._store(where.key, apply(current, patch), "MODIFIED")

    def _put(self, method: str, path: str, where: Target, body: JSON) -> JSON:
        current = self._get(method, path)
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"].get("resourceVersion"):
            raise _error(method, path, 409, "the object has been modified")
        obj = copy.deepcopy(body)
        obj["metadata"]["uid"] = current["metadata"]["uid"]
        return self._store(where.key, obj, "MODIFIED")

    def _delete(self, method: str, path: str, where: Target, options: JSON) -> JSON:
        current = self._get(method, path)
        meta = current["metadata"]
        for field, value in (options.get("preconditions") or {}).items():
            if value is not None and meta.get(field) != value:
                raise _error(
                    method,
                    path,
                    409,
                    f"Precondition failed: {field} in precondition: {value}, "
                    f"{field} in object meta: {meta.get(field)}",
                )
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = (current.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        bound = where.plural == "pods" and (current.get("spec") or {}).get("nodeName")
        if bound and grace > 0:
            if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds", 0) <= grace:
                return current  # marked already, with a grace as short
            meta.setdefault("deletionTimestamp", rfc3339(datetime.now(UTC)))
            meta["deletionGracePeriodSeconds"] = grace
            return self._store(where.key, current, "MODIFIED")
        del self.objects[where.key]
        self._record(where.key, "DELETED", current)
        return {"kind": "Status", "status": "Success", "details": {"uid": meta.get("uid")}}

    # ------------------------------------------------------------ the log

    def _store(self, key: Key, obj: JSON, kind: str) -> JSON:
        self.version = next(self._versions)
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = obj
        self._record(key, kind, obj)
        return copy.deepcopy(obj)

    def _record(self, key: Key, kind: str, obj: JSON) -> None:
        if kind == "DELETED":
            self.version = next(self._versions)
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}
        self._events.append((self.version, key, kind, copy.deepcopy(obj)))
        self._wake()

    def _wake(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    def dump(self) -> str:
        """Every object, for a failing test's message."""
        return json.dumps({"/".join(k): v for k, v in self.objects.items()}, indent=1)
