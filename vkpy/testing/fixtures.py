"""pytest fixtures over the testbed: a plugin a test suite opts into with
``pytest_plugins = ["vkpy.testing.fixtures"]`` in its root conftest (vkpy's does).

``testbed`` brings the testbed up once per session (reusing what runs already) and
stops only what it started itself, so a developer's ``make testbed-up`` survives a
test run. The other fixtures hand out clients for one part each.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import asyncssh
import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient

from vkpy.testing import oldapiserver, worker
from vkpy.testing.errors import TestbedError
from vkpy.testing.kubebinaries import SPDY_APISERVER_VERSION
from vkpy.testing.oldapiserver import OldApiserver
from vkpy.testing.processes import Supervisor
from vkpy.testing.testbed import Endpoints, Testbed
from vkpy.testing.worker import Worker

# What the session's testbed reported about itself, for the terminal summary.
_REPORT: dict[str, str] = {}


@pytest.fixture(scope="session")
def testbed() -> Iterator[Endpoints]:
    bed = Testbed()
    names = bed.supervisor.names()
    was_running = bool(names) and all(bed.supervisor.pid(n) is not None for n in names)
    try:
        endpoints = bed.up()
    except TestbedError as exc:
        pytest.fail(f"testbed: {exc}", pytrace=False)
    saved = dict(os.environ)
    os.environ.update(endpoints.environment())
    yield endpoints
    os.environ.clear()
    os.environ.update(saved)
    if not was_running and not os.environ.get("VKPY_KEEP_TESTBED"):
        bed.down()


@pytest.fixture(scope="session")
def worker_node(testbed: Endpoints) -> Iterator[Worker]:
    """The worker node with a real kubelet (``vkpy.testing.worker``), started on first
    use; stopped with the testbed, or at the end when the testbed ran already but the
    worker did not (unless ``VKPY_KEEP_TESTBED`` is set)."""
    bed = Testbed(testbed.state)
    was_running = bed.supervisor.pid("worker-kubelet") is not None
    try:
        node = bed.worker(testbed)
    except TestbedError as exc:
        pytest.fail(f"worker node: {exc}", pytrace=False)
    _REPORT.update({f"worker {k}": v for k, v in node.versions.items()})
    yield node
    if not was_running and not os.environ.get("VKPY_KEEP_TESTBED"):
        worker.down(testbed.state, bed.supervisor)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The versions of the real components the session ran against."""
    if _REPORT:
        terminalreporter.section("testbed")
        for what, version in sorted(_REPORT.items()):
            terminalreporter.write_line(f"{what}: {version}")


@pytest.fixture(scope="session")
def old_apiserver(testbed: Endpoints) -> Iterator[OldApiserver]:
    """An older kube-apiserver (``SPDY_APISERVER_VERSION``) beside the testbed's, on
    the same etcd, CA and kubelet-client certificate; started on first use and
    stopped at the end unless it ran before. Namespace ``default`` is prepared
    (``oldapiserver.prepare_namespace``); pods need ``spec.nodeName``."""
    name = oldapiserver.process_name(SPDY_APISERVER_VERSION)
    was_running = Supervisor(testbed.state).pid(name) is not None
    try:
        old = oldapiserver.start(testbed)
        oldapiserver.prepare_namespace(old, "default")
    except TestbedError as exc:
        pytest.fail(f"old apiserver: {exc}", pytrace=False)
    yield old
    if not was_running:
        oldapiserver.stop(testbed)


@pytest.fixture
async def kube_api(testbed: Endpoints) -> AsyncIterator[ApiClient]:
    """A kubernetes_asyncio ApiClient logged in as the testbed's cluster admin."""
    api: ApiClient = await config.new_client_from_config(
        config_file=str(testbed.cluster.admin_kubeconfig)
    )
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def login_node(testbed: Endpoints) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An asyncssh connection to the testbed's login node as its unprivileged user."""
    async with asyncssh.connect(
        testbed.ssh.host,
        port=testbed.ssh.port,
        username=testbed.ssh.user,
        client_keys=[str(testbed.ssh.client_key)],
        known_hosts=str(testbed.ssh.known_hosts),
    ) as connection:
        yield connection
