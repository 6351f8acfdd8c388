"""Authentication and authorization of the kubelet API, without a cluster.

The reviews go to an in-test double of the Kubernetes API that records what it is
sent; tests/integration/test_kubelet_api.py runs the same code against a real apiserver.
"""

from typing import Any

import pytest
from aiohttp import web

from vkpy.errors import KubeApiError
from vkpy.kubeletapi.auth import (
    ACCESS_REVIEWS,
    TOKEN_REVIEWS,
    Attributes,
    TtlCache,
    User,
    WebhookAuth,
    bearer_token,
    request_attributes,
    user_from_certificate,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ReviewApi:
    """Answers TokenReviews from ``tokens`` and SubjectAccessReviews from ``allowed``."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.allowed: set[tuple[str, str, str]] = set()  # (user, verb, subresource)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.failure: KubeApiError | None = None

    async def request(self, method: str, path: str, *, body: Any = None) -> dict[str, Any]:
        assert method == "POST"
        self.sent.append((path, body))
        if self.failure is not None:
            raise self.failure
        if path == TOKEN_REVIEWS:
            user = self.tokens.get(body["spec"]["token"])
            status = {"authenticated": True, "user": user} if user else {"error": "invalid"}
            return {**body, "status": status}
        spec = body["spec"]
        attributes = spec["resourceAttributes"]
        key = (spec["user"], attributes["verb"], attributes["subresource"])
        return {**body, "status": {"allowed": key in self.allowed, "reason": "test"}}


class Request:
    """The parts of an aiohttp request the authenticator reads."""

    def __init__(self, method: str, path: str, *, token: str | None = None, peercert=None):
        self.method = method
        self.path = path
        self.headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self.transport = self
        self._peercert = peercert

    def get_extra_info(self, name: str) -> Any:
        return self._peercert if name == "peercert" else None


ALICE = {"username": "alice", "uid": "u-1", "groups": ["devs", "system:authenticated"]}
MASTERS_CERT = {
    "subject": (
        (("organizationName", "system:masters"),),
        (("organizationName", "ops"),),
        (("commonName", "kube-apiserver-kubelet-client"),),
    )
}


@pytest.fixture
def api() -> ReviewApi:
    return ReviewApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(api: ReviewApi, clock: Clock) -> WebhookAuth:
    return WebhookAuth(api, node_name="node-1", clock=clock)


# ---------------------------------------------------------------- attributes


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/containerLogs/ns/pod/c", [("get", "proxy")]),
        ("GET", "/pods", [("get", "pods"), ("get", "proxy")]),
        ("GET", "/pods/", [("get", "pods"), ("get", "proxy")]),
        ("GET", "/podsx", [("get", "proxy")]),
        ("GET", "/runningpods/", [("get", "pods"), ("get", "proxy")]),
        ("GET", "/healthz", [("get", "healthz"), ("get", "proxy")]),
        ("GET", "/configz", [("get", "configz"), ("get", "proxy")]),
        ("GET", "/metrics", [("get", "metrics")]),
        ("GET", "/metrics/resource", [("get", "metrics")]),
        ("GET", "/stats/summary", [("get", "stats")]),
        ("GET", "/logs/syslog", [("get", "log")]),
        ("POST", "/checkpoint/ns/pod/c", [("create", "checkpoint")]),
        ("POST", "/exec/ns/pod/c", [("create", "proxy")]),
        ("GET", "/exec/ns/pod/c", [("get", "proxy")]),
        ("HEAD", "/healthz", [("get", "healthz"), ("get", "proxy")]),
        ("PUT", "/x", [("update", "proxy")]),
        ("PATCH", "/x", [("patch", "proxy")]),
        ("DELETE", "/x", [("delete", "proxy")]),
        ("OPTIONS", "/x", [("", "proxy")]),
    ],
)
def test_request_attributes_follow_the_kubelet(method, path, expected):
    assert request_attributes(method, path) == tuple(Attributes(v, s) for v, s in expected)


# ---------------------------------------------------------------- credentials


def test_user_from_certificate():
    user = user_from_certificate(MASTERS_CERT)
    assert user == User(
        name="kube-apiserver-kubelet-client",
        groups=("system:masters", "ops", "system:authenticated"),
    )
    assert user_from_certificate(None) is None
    assert user_from_certificate({}) is None
    assert user_from_certificate({"subject": ((("organizationName", "x"),),)}) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("  Bearer abc  ", "abc"),
        ("Bearer abc extra", "abc"),
        ("Bearer ", None),
        ("Bearer  abc", ""),  # two spaces: an empty token, refused
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header, token):
    assert bearer_token(header) == token


# ---------------------------------------------------------------- caches


def test_ttl_cache_expires_and_evicts_least_recently_used():
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(size=2, clock=clock)
    cache.put("a", 1, ttl=10)
    cache.put("b", 2, ttl=100)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3, ttl=100)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    clock.now += 10
    assert cache.get("a") is None
    assert len(cache) == 1


async def test_token_reviews_are_cached_for_two_minutes(auth, api, clock):
    api.tokens["good"] = ALICE
    user = await auth.authenticate_token("good")
    assert user == User("alice", "u-1", ("devs", "system:authenticated"))
    assert await auth.authenticate_token("good") == user
    assert len(api.sent) == 1
    clock.now += 119
    await auth.authenticate_token("good")
    assert len(api.sent) == 1
    clock.now += 1
    await auth.authenticate_token("good")
    assert len(api.sent) == 2
    assert api.sent[0] == (
        TOKEN_REVIEWS,
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": "good"},
        },
    )


async def test_refused_tokens_are_cached_for_thirty_seconds(auth, api, clock):
    assert await auth.authenticate_token("bad") is None
    api.tokens["bad"] = ALICE  # the token becomes valid: not seen until the entry expires
    clock.now += 29
    assert await auth.authenticate_token("bad") is None
    clock.now += 1
    assert (await auth.authenticate_token("bad")).name == "alice"
    assert len(api.sent) == 2


async def test_empty_token_is_refused_without_asking(auth, api):
    assert await auth.authenticate_token("") is None
    assert api.sent == []


async def test_decisions_are_cached_five_minutes_allowed_thirty_seconds_denied(auth, api, clock):
    user = User("alice", groups=("system:authenticated",))
    logs = Attributes("get", "proxy")
    stats = Attributes("get", "stats")
    api.allowed.add(("alice", "get", "proxy"))
    assert (await auth.authorize(user, logs)).allowed
    assert not (await auth.authorize(user, stats)).allowed
    api.allowed.add(("alice", "get", "stats"))
    api.allowed.discard(("alice", "get", "proxy"))
    clock.now += 30
    assert (await auth.authorize(user, logs)).allowed  # still cached
    assert (await auth.authorize(user, stats)).allowed  # denial expired
    clock.now += 270
    assert not (await auth.authorize(user, logs)).allowed
    assert len(api.sent) == 4


async def test_access_review_names_the_node_subresource(auth, api):
    user = User("alice", "u-1", ("devs",), (("scopes", ("a", "b")),))
    await auth.authorize(user, Attributes("create", "proxy"))
    path, body = api.sent[0]
    assert path == ACCESS_REVIEWS
    assert body == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "alice",
            "uid": "u-1",
            "groups": ["devs"],
            "extra": {"scopes": ["a", "b"]},
            "resourceAttributes": {
                "verb": "create",
                "group": "",
                "version": "v1",
                "resource": "nodes",
                "subresource": "proxy",
                "name": "node-1",
            },
        },
    }


# ---------------------------------------------------------------- the filter


async def test_no_credentials_is_401(auth, api):
    with pytest.raises(web.HTTPUnauthorized) as caught:
        await auth.check(Request("GET", "/pods"))
    assert caught.value.text == "Unauthorized"
    assert api.sent == []


async def test_unknown_token_is_401(auth):
    with pytest.raises(web.HTTPUnauthorized):
        await auth.check(Request("GET", "/pods", token="nope"))


async def test_certificate_wins_over_token(auth, api):
    api.tokens["good"] = ALICE
    api.allowed.add(("kube-apiserver-kubelet-client", "get", "proxy"))
    user = await auth.check(
        Request("GET", "/containerLogs/a/b/c", token="good", peercert=MASTERS_CERT)
    )
    assert user.name == "kube-apiserver-kubelet-client"
    assert [path for path, _ in api.sent] == [ACCESS_REVIEWS]


async def test_any_allowed_attribute_lets_the_request_through(auth, api):
    api.tokens["good"] = ALICE
    api.allowed.add(("alice", "get", "proxy"))
    user = await auth.check(Request("GET", "/pods", token="good"))
    assert user.name == "alice"
    subresources = [b["spec"]["resourceAttributes"]["subresource"] for _, b in api.sent[1:]]
    assert subresources == ["pods", "proxy"]


async def test_denied_is_403_with_the_kubelets_message(auth, api):
    api.tokens["good"] = ALICE
    with pytest.raises(web.HTTPForbidden) as caught:
        await auth.check(Request("GET", "/pods", token="good"))
    assert caught.value.text == (
        "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
    )


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (KubeApiError("connection refused"), 503),
        (KubeApiError("overloaded", status=429), 503),
        (KubeApiError("internal", status=500), 503),
        (KubeApiError("forbidden", status=403), 500),
    ],
)
async def test_failing_api_never_allows(auth, api, failure, status):
    api.failure = failure
    with pytest.raises(web.HTTPException) as caught:
        await auth.check(Request("GET", "/pods", token="good"))
    assert caught.value.status == status
    with pytest.raises(web.HTTPException) as caught:
        await auth.check(Request("GET", "/pods", peercert=MASTERS_CERT))
    assert caught.value.status == status
    assert "Authorization error (user=kube-apiserver-kubelet-client" in caught.value.text


async def test_failures_are_not_cached(auth, api):
    api.failure = KubeApiError("down")
    with pytest.raises(web.HTTPServiceUnavailable):
        await auth.check(Request("GET", "/pods", token="good"))
    api.failure = None
    api.tokens["good"] = ALICE
    api.allowed.add(("alice", "get", "pods"))
    assert (await auth.check(Request("GET", "/pods", token="good"))).name == "alice"
