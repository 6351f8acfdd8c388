"""The agent's Prometheus metrics, defined once for the whole agent.

Only definitions and small helpers live here; the parts of the agent update them.
They are registered in prometheus_client's default registry (which also carries the
process and Python collectors) and served by the kubelet API on ``/metrics``.

    vkpy_pods{phase}                                   gauge: this node's pods by phase
    vkpy_kube_api_requests_total{verb,resource}        Kubernetes API requests sent
    vkpy_backend_calls_total{operation}                backend calls made
    vkpy_backend_errors_total{operation}               backend calls that raised
    vkpy_backend_call_duration_seconds{operation}      how long backend calls took
    vkpy_runner_commands_total{command}                commands a batch backend ran (squeue...)
    vkpy_ssh_connections_opened_total                  SSH connections opened to a login node
    vkpy_watch_restarts_total{resource}                watches re-listed after an error or 410
    vkpy_reconcile_duration_seconds                    one pod reconcile, start to end
    vkpy_kubelet_api_requests_total{path,code}         requests served by the kubelet API
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")

PODS = Gauge("vkpy_pods", "Pods bound to this node, by phase.", ["phase"])
KUBE_API_REQUESTS = Counter(
    "vkpy_kube_api_requests_total",
    "Requests sent to the Kubernetes API, by verb and resource.",
    ["verb", "resource"],
)
BACKEND_CALLS = Counter(
    "vkpy_backend_calls_total", "Calls made to the backend, by operation.", ["operation"]
)
BACKEND_ERRORS = Counter(
    "vkpy_backend_errors_total", "Backend calls that raised an error, by operation.", ["operation"]
)
BACKEND_CALL_SECONDS = Histogram(
    "vkpy_backend_call_duration_seconds",
    "Duration of backend calls, by operation.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RUNNER_COMMANDS = Counter(
    "vkpy_runner_commands_total",
    "Commands run by a batch backend on its login node (or locally), by program name.",
    ["command"],
)
SSH_CONNECTIONS = Counter(
    "vkpy_ssh_connections_opened_total", "SSH connections opened to a login node."
)
WATCH_RESTARTS = Counter(
    "vkpy_watch_restarts_total",
    "Watches that had to list again (error, expired resourceVersion), by resource.",
    ["resource"],
)
RECONCILE_SECONDS = Histogram(
    "vkpy_reconcile_duration_seconds",
    "Duration of one pod reconcile.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
KUBELET_API_REQUESTS = Counter(
    "vkpy_kubelet_api_requests_total",
    "Requests served by the kubelet API, by path (its first segment) and status code.",
    ["path", "code"],
)

_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def set_pod_phases(counts: Mapping[str, int]) -> None:
    """Set the pods gauge from ``{phase: count}``; phases left out are set to 0."""
    for phase in POD_PHASES:
        PODS.labels(phase=phase).set(counts.get(phase, 0))
    for phase, count in counts.items():
        if phase not in POD_PHASES:
            PODS.labels(phase=phase).set(count)


def api_request_labels(method: str, path: str) -> tuple[str, str]:
    """(verb, resource) of a Kubernetes API request path, such as ("get", "pods/status").

    GET on a collection counts as ``list`` (watches are GETs on a collection too: call
    `count_kube_request` with verb ``watch`` where that matters). The query must
    not be part of ``path``.
    """
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    if segments[:1] == ["api"]:
        rest = segments[2:]
    elif segments[:1] == ["apis"]:
        rest = segments[3:]
    else:
        return method.lower(), "nonresource"
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        rest = rest[2:]  # namespaced: namespaces/NS/RESOURCE/...
    if not rest:
        return method.lower(), "discovery"
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    if method == "GET":
        return ("get" if len(rest) >= 2 else "list"), resource
    if method == "DELETE" and len(rest) < 2:
        return "deletecollection", resource
    return _VERBS.get(method, method.lower()), resource


def count_kube_request(method: str, path: str, *, verb: str | None = None) -> None:
    """Count one Kubernetes API request; usable as `vkpy.kube.client.Kube`'s on_request."""
    derived, resource = api_request_labels(method, path)
    KUBE_API_REQUESTS.labels(verb=verb or derived, resource=resource).inc()


@contextmanager
def backend_call(operation: str) -> Iterator[None]:
    """Count a backend call, its duration, and whether it raised (the error propagates)."""
    BACKEND_CALLS.labels(operation=operation).inc()
    started = time.perf_counter()
    try:
        yield
    except Exception:
        BACKEND_ERRORS.labels(operation=operation).inc()
        raise
    finally:
        BACKEND_CALL_SECONDS.labels(operation=operation).observe(time.perf_counter() - started)


def count_watch_restart(resource: str) -> None:
    WATCH_RESTARTS.labels(resource=resource).inc()


@contextmanager
def reconcile_timer() -> Iterator[None]:
    """Observe the duration of one reconcile, also when it raises."""
    started = time.perf_counter()
    try:
        yield
    finally:
        RECONCILE_SECONDS.observe(time.perf_counter() - started)


def count_kubelet_api_request(path: str, code: int) -> None:
    KUBELET_API_REQUESTS.labels(path=path, code=str(code)).inc()


def exposition(accept: str = "", registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The metrics in the format the scraper's Accept header asks for (Prometheus text
    by default, OpenMetrics on request), and its content type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
