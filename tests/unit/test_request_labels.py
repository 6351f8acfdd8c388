import pytest

from vkpy.metrics import api_request_labels


@pytest.mark.parametrize(
    ("method", "path", "labels"),
    [
        ("GET", "/api/v1/namespaces/ns/pods/p/status", "pods/status"),
        ("GET", "/api/v1/namespaces/ns/pods/p", "pods"),
        ("GET", "/api/v1/namespaces/ns/pods", "pods"),
        ("GET", "/api/v1/pods", "pods"),
        ("GET", "/api/v1/nodes/n/status", "nodes/status"),
        ("GET", "/api/v1/nodes", "nodes"),
        ("GET", "/api/v1/namespaces/ns", "namespaces"),
        ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n", "leases"),
        ("GET", "/api/v1/namespaces/ns/serviceaccounts/sa/token", "serviceaccounts/token"),
        ("GET", "/api/v1/namespaces/ns/events", "events"),
    ],
)
def test_request_resource_names_subresources(method, path, labels):
    assert api_request_labels(method, path)[1] == labels
