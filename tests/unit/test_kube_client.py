import pytest

from vkpy.kube.client import resource_of


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/ns/pods/p/status", "pods/status"),
        ("/api/v1/namespaces/ns/pods/p", "pods"),
        ("/api/v1/namespaces/ns/pods", "pods"),
        ("/api/v1/pods", "pods"),
        ("/api/v1/nodes/n/status", "nodes/status"),
        ("/api/v1/nodes", "nodes"),
        ("/api/v1/namespaces/ns", "namespaces"),
        ("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n", "leases"),
        ("/api/v1/namespaces/ns/serviceaccounts/sa/token", "serviceaccounts/token"),
        ("/api/v1/namespaces/ns/events", "events"),
    ],
)
def test_resource_of(path, resource):
    assert resource_of(path) == resource
