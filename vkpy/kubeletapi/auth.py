"""Who may call the kubelet API: the kubelet's webhook authentication and authorization.

Authentication, in the kubelet's order:

1. a client certificate the TLS layer verified against the client CA (the listener
   requests one but does not require it): user = CN, groups = the O values;
2. ``Authorization: Bearer <token>``: a TokenReview (authentication.k8s.io/v1),
   cached 2 minutes when it authenticates and 30 seconds when it does not;
3. otherwise 401 Unauthorized.

Every authenticated user is also in ``system:authenticated``, as the kubelet's
authenticator adds it.

Authorization: a SubjectAccessReview (authorization.k8s.io/v1) for the node object,
``nodes/<subresource>`` with the verb of the HTTP method (GET/HEAD get, POST create,
PUT update, PATCH patch, DELETE delete). The subresource follows the kubelet
(with KubeletFineGrainedAuthz, on by default since 1.33):

    /stats/*    stats         /metrics/*      metrics       /logs/*   log
    /checkpoint/* checkpoint  /pods, /runningpods/  pods, then proxy
    /healthz    healthz, then proxy       /configz  configz, then proxy
    anything else (containerLogs, exec, attach, portForward, run): proxy

The request is allowed when any of its attributes is allowed. Decisions are cached
5 minutes when allowed and 30 seconds when not, like the kubelet's defaults.

A failing API never lets a request through: a TokenReview or SubjectAccessReview
that cannot be made answers 503 (the API is unreachable or overloaded) or 500.
Tokens are never logged and only their SHA-256 is kept as a cache key.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web

from vkpy.errors import KubeApiError
from vkpy.kubeletapi.protocols import KubeRequests

logger = logging.getLogger(__name__)

AUTHENTICATED_GROUP = "system:authenticated"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 (a path)
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
# (path prefix, subresources tried in order); the first prefix that matches wins.
_FINE_GRAINED = (("/pods", "pods"), ("/healthz", "healthz"), ("/configz", "configz"))
_COARSE = (
    ("/stats", "stats"),
    ("/metrics", "metrics"),
    ("/logs", "log"),
    ("/checkpoint", "checkpoint"),
)


@dataclass(frozen=True)
class User:
    """An authenticated caller. ``extra`` is kept as sorted pairs so users hash."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Attributes:
    """What a request does to the node object: ``verb`` on ``nodes/<subresource>``."""

    verb: str
    subresource: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def _is_subpath(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def request_attributes(method: str, path: str) -> tuple[Attributes, ...]:
    """The attributes the kubelet checks for ``method path``, most specific first."""
    verb = _VERBS.get(method.upper(), "")
    subresources: list[str] = []
    for prefix, name in _FINE_GRAINED:
        if _is_subpath(path, prefix):
            subresources.append(name)
            break
    else:
        if _is_subpath(path, "/runningpods/"):
            subresources.append("pods")
    for prefix, name in _COARSE:
        if _is_subpath(path, prefix):
            subresources.append(name)
            break
    else:
        subresources.append("proxy")
    return tuple(Attributes(verb, s) for s in subresources)


def user_from_certificate(peercert: Mapping[str, Any] | None) -> User | None:
    """The user of a verified client certificate (``SSLObject.getpeercert()``)."""
    if not peercert:
        return None
    common_name = ""
    organizations: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and not common_name:
                common_name = value
            elif key == "organizationName":
                organizations.append(value)
    if not common_name:
        return None  # the kubelet's x509 authenticator refuses an empty user name too
    return User(name=common_name, groups=_with_authenticated(organizations))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None (no such header).

    An empty token is returned as "" so the caller can refuse it."""
    header = (authorization or "").strip()
    parts = header.split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def _with_authenticated(groups: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(groups) if AUTHENTICATED_GROUP in groups else (*groups, AUTHENTICATED_GROUP)


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded LRU whose entries expire; each entry carries its own time to live."""

    def __init__(self, *, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._size = size
        self._clock = clock

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float) -> None:
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class WebhookAuth:
    """Authenticates and authorizes kubelet API requests through the Kubernetes API.

    ``kube`` needs ``create`` on tokenreviews and subjectaccessreviews (the
    ``system:auth-delegator`` ClusterRole grants both).
    """

    def __init__(
        self,
        kube: KubeRequests,
        *,
        node_name: str,
        authenticated_ttl: float = 120.0,
        unauthenticated_ttl: float = 30.0,
        allowed_ttl: float = 300.0,
        denied_ttl: float = 30.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.node_name = node_name
        self._authenticated_ttl = authenticated_ttl
        self._unauthenticated_ttl = unauthenticated_ttl
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self._tokens: TtlCache[bytes, User | bool] = TtlCache(size=cache_size, clock=clock)
        self._decisions: TtlCache[tuple[User, Attributes], Decision] = TtlCache(
            size=cache_size, clock=clock
        )

    # ------------------------------------------------------------ authentication

    async def authenticate_token(self, token: str) -> User | None:
        """The user a bearer token belongs to, or None. Raises KubeApiError."""
        if not token:
            return None
        key = hashlib.sha256(token.encode()).digest()
        cached = self._tokens.get(key)
        if cached is not None:
            return cached if isinstance(cached, User) else None
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        answer = await self.kube.request("POST", TOKEN_REVIEWS, body=review)
        status = answer.get("status") or {}
        user = _user_from_review(status) if status.get("authenticated") else None
        if user is None:
            if status.get("error"):
                logger.debug("token refused: %s", status["error"])
            self._tokens.put(key, False, self._unauthenticated_ttl)
        else:
            self._tokens.put(key, user, self._authenticated_ttl)
        return user

    async def authenticate(self, request: web.BaseRequest) -> User | None:
        """The caller of ``request``: its client certificate first, then its token."""
        transport = request.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        user = user_from_certificate(peercert)
        if user is not None:
            return user
        token = bearer_token(request.headers.get("Authorization"))
        return None if token is None else await self.authenticate_token(token)

    # ------------------------------------------------------------ authorization

    async def authorize(self, user: User, attributes: Attributes) -> Decision:
        """Whether ``user`` may ``attributes.verb`` nodes/<subresource> of this node.
        Raises KubeApiError when the review cannot be made."""
        cached = self._decisions.get((user, attributes))
        if cached is not None:
            return cached
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.name,
                "uid": user.uid,
                "groups": list(user.groups),
                "extra": {key: list(values) for key, values in user.extra},
                "resourceAttributes": {
                    "verb": attributes.verb,
                    "group": "",
                    "version": "v1",
                    "resource": "nodes",
                    "subresource": attributes.subresource,
                    "name": self.node_name,
                },
            },
        }
        answer = await self.kube.request("POST", ACCESS_REVIEWS, body=review)
        status = answer.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        decision = Decision(allowed, str(status.get("reason") or status.get("evaluationError", "")))
        ttl = self._allowed_ttl if allowed else self._denied_ttl
        self._decisions.put((user, attributes), decision, ttl)
        return decision

    # ------------------------------------------------------------ the filter

    async def check(self, request: web.BaseRequest) -> User:
        """Authenticate and authorize ``request``; raise the HTTP error to answer instead."""
        try:
            user = await self.authenticate(request)
        except KubeApiError as exc:
            logger.error("cannot authenticate %s %s: %s", request.method, request.path, exc)
            raise _http_error(exc, "Unable to authenticate the request") from exc
        if user is None:
            raise web.HTTPUnauthorized(text="Unauthorized")
        attributes = request_attributes(request.method, request.path)
        for attribute in attributes:
            try:
                decision = await self.authorize(user, attribute)
            except KubeApiError as exc:
                logger.error("cannot authorize %s: %s", user.name, exc)
                raise _http_error(
                    exc,
                    f"Authorization error (user={user.name}, verb={attribute.verb}, "
                    f"resource=nodes, subresource={attribute.subresource})",
                ) from exc
            if decision.allowed:
                return user
        subresources = " ".join(a.subresource for a in attributes)
        message = (
            f"Forbidden (user={user.name}, verb={attributes[0].verb}, resource=nodes, "
            f"subresource(s)=[{subresources}])"
        )
        logger.info("%s %s: %s", request.method, request.path, message)
        raise web.HTTPForbidden(text=message + "\n")


def _http_error(exc: KubeApiError, text: str) -> web.HTTPException:
    # Unreachable, overloaded or failing API: try again later (503). Anything else
    # (the agent may not create reviews, a malformed answer) is our own fault (500).
    if exc.status is None or exc.status == 429 or exc.status >= 500:
        return web.HTTPServiceUnavailable(text=f"{text}: the Kubernetes API is unavailable")
    return web.HTTPInternalServerError(text=text)


def _user_from_review(status: Mapping[str, Any]) -> User | None:
    user = status.get("user") or {}
    name = user.get("username") or ""
    if not name:
        return None
    extra = tuple(sorted((k, tuple(v or ())) for k, v in (user.get("extra") or {}).items()))
    return User(
        name=name,
        uid=user.get("uid") or "",
        groups=_with_authenticated(list(user.get("groups") or ())),
        extra=extra,
    )
