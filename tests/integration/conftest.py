import pytest

from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.testbed import Endpoints

from .helpers import kubectl


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def login_user(testbed: Endpoints) -> Endpoints:
    """The testbed, with its login user's rootless Podman ready to run job containers."""
    prepare_login_user(testbed.ssh.user)
    return testbed


@pytest.fixture(scope="module")
def agent_account(testbed: Endpoints) -> None:
    """The namespace, ServiceAccount and RBAC of manifests/, applied for real
    (idempotent; they stay)."""
    applied = kubectl(
        testbed,
        "apply",
        "-f",
        "manifests/namespace.yaml",
        "-f",
        "manifests/serviceaccount.yaml",
        "-f",
        "manifests/rbac.yaml",
    )
    assert applied.returncode == 0, applied.stderr
