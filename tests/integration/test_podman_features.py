"""The Podman backend against the testbed's real Podman: what the contract does not cover."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from vkpy.backend import (
    POD_IP,
    Container,
    EnvVar,
    File,
    LogOptions,
    Mount,
    PodRun,
    PodSpec,
    Resources,
    RestartPolicy,
    Running,
    Terminated,
    Volume,
    Waiting,
)
from vkpy.backends.podman import PodmanBackend
from vkpy.backends.podman import spec as podman_spec
from vkpy.config import PodmanConfig
from vkpy.errors import BackendUnavailable, ImagePullError, UnsupportedPodFeature
from vkpy.testing.testbed import Endpoints
from vkpy.testing.waiting import eventually, listed

IMAGE = "localhost/busybox:latest"
TIMEOUT = 30.0


def fast_delay(restart_count: int) -> float:
    """The kubelet's doubling back-off, scaled down so tests take seconds."""
    return 1.0 * (1 << restart_count)


class Node:
    """Backends for one test under a node name of its own, and what they reported."""

    def __init__(self, testbed: Endpoints, tmp_path: Path) -> None:
        self.testbed = testbed
        self.tmp_path = tmp_path
        self.name = f"test-{uuid.uuid4().hex[:10]}"
        self.backends: list[PodmanBackend] = []
        self.changes: list[tuple[float, PodRun]] = []

    def config(self, **overrides: Any) -> PodmanConfig:
        values: dict[str, Any] = {
            "socket": str(self.testbed.podman.socket),
            "containers_conf": self.testbed.podman.containers_conf,
            "state_dir": self.tmp_path / "state",
            "memory_dir": self.tmp_path / "memory",
        }
        return PodmanConfig(**(values | overrides))

    async def backend(self, **overrides: Any) -> PodmanBackend:
        backend = PodmanBackend(
            self.config(**overrides), node_name=self.name, restart_delay=fast_delay
        )
        await backend.start()
        backend.on_change(lambda run: self.changes.append((time.time(), run)))
        self.backends.append(backend)
        return backend

    async def cleanup(self) -> list[dict[str, Any]]:
        backend = await self.backend()  # a fresh one: the test may have closed its own
        for uid in await backend.list():
            await backend.delete(uid, grace_seconds=0)
        left = await backend.api.list_containers({podman_spec.NODE: self.name})
        for started in self.backends:
            await started.close()
        return left


@pytest.fixture
async def node(testbed: Endpoints, tmp_path: Path) -> AsyncIterator[Node]:
    test_node = Node(testbed, tmp_path)
    try:
        yield test_node
    finally:
        left = await test_node.cleanup()
    assert left == [], "the test left Podman containers behind"


def pod_spec(
    name: str,
    *containers: Container,
    init: tuple[Container, ...] = (),
    volumes: tuple[Volume, ...] = (),
    policy: RestartPolicy = "Never",
    deadline: int | None = None,
) -> PodSpec:
    return PodSpec(
        uid=str(uuid.uuid4()),
        namespace="features",
        name=name,
        containers=containers,
        init_containers=init,
        volumes=volumes,
        restart_policy=policy,
        active_deadline_seconds=deadline,
        termination_grace_period_seconds=2,
    )


def sh(name: str, script: str, **kwargs: Any) -> Container:
    return Container(name=name, image=IMAGE, command=("sh", "-c", script), **kwargs)


async def wait_for(
    backend: PodmanBackend, uid: str, predicate: Callable[[PodRun], bool], what: str
) -> PodRun:
    run = await listed(
        backend, uid, lambda r: r is not None and predicate(r), what, timeout=TIMEOUT
    )
    assert run is not None
    return run


def state(run: PodRun, name: str) -> Any:
    for status in (*run.init_containers, *run.containers):
        if status.name == name:
            return status
    raise AssertionError(f"no container {name} in {run}")


def all_terminated(run: PodRun) -> bool:
    return all(isinstance(c.state, Terminated) for c in run.containers)


async def test_on_failure_restarts_after_back_off_and_counts(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec(
        "onfailure",
        sh(
            "main",
            "echo run-$(cat /work/runs 2>/dev/null | wc -l); echo x >> /work/runs; "
            '[ "$(wc -l < /work/runs)" -ge 3 ]',
            mounts=(Mount("work", "/work"),),
        ),
        volumes=(Volume("work", "emptyDir"),),
        policy="OnFailure",
    )
    await backend.create(pod)
    run = await wait_for(backend, pod.uid, all_terminated, "the third run to complete")
    main = state(run, "main")
    assert main.restart_count == 2
    assert main.state.exit_code == 0 and main.state.reason == "Completed"
    assert main.last_state.exit_code == 1 and main.last_state.reason == "Error"
    # The back-off: restart n+1 starts no sooner than fast_delay(n) after run n ended.
    gap = (main.state.started_at - main.last_state.finished_at).total_seconds()
    assert gap >= fast_delay(1) - 0.1
    backoffs = [
        c
        for _, r in node.changes
        if r.uid == pod.uid
        for c in r.containers
        if isinstance(c.state, Waiting) and c.state.reason == "CrashLoopBackOff"
    ]
    assert backoffs, "no CrashLoopBackOff was reported between the runs"
    assert all(isinstance(c.last_state, Terminated) for c in backoffs)
    assert {c.restart_count for c in backoffs} == {0, 1}
    # The previous instance is kept for `logs --previous`; older ones are removed.
    assert await logs(backend, pod.uid, "main") == b"run-2\n"
    assert await logs(backend, pod.uid, "main", LogOptions(previous=True)) == b"run-1\n"
    instances = await backend.api.list_containers({podman_spec.UID: pod.uid})
    assert sorted(i["Labels"].get(podman_spec.RESTARTS, "infra") for i in instances) == [
        "1",
        "2",
        "infra",
    ]


async def test_always_restarts_a_container_that_succeeded(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("always", sh("main", "echo hello"), policy="Always")
    await backend.create(pod)
    run = await wait_for(
        backend, pod.uid, lambda r: r.containers[0].restart_count >= 1, "a restart"
    )
    assert run.containers[0].last_state is not None
    assert run.containers[0].last_state.reason == "Completed"


async def test_failing_init_container_under_never_fails_the_pod(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec(
        "initfails",
        sh("main", "echo should not run"),
        init=(sh("setup", "exit 4"),),
    )
    await backend.create(pod)
    run = await wait_for(
        backend,
        pod.uid,
        lambda r: isinstance(r.init_containers[0].state, Terminated),
        "the init container to end",
    )
    await asyncio.sleep(1.5)  # nothing more may happen
    run = (await backend.list())[pod.uid]
    setup = state(run, "setup")
    assert setup.state.exit_code == 4 and setup.state.reason == "Error"
    assert setup.restart_count == 0
    assert state(run, "main").state == Waiting("PodInitializing")


async def test_failing_init_container_under_on_failure_runs_again(node: Node) -> None:
    backend = await node.backend()
    work = (Mount("work", "/work"),)
    pod = pod_spec(
        "initretry",
        sh("main", "cat /work/done", mounts=work),
        init=(
            sh(
                "setup",
                "if [ -e /work/tried ]; then echo ok > /work/done; else "
                "touch /work/tried; exit 1; fi",
                mounts=work,
            ),
        ),
        volumes=(Volume("work", "emptyDir"),),
        policy="OnFailure",
    )
    await backend.create(pod)
    run = await wait_for(backend, pod.uid, all_terminated, "the app container to end")
    assert state(run, "setup").restart_count == 1
    assert state(run, "setup").state.exit_code == 0
    assert state(run, "main").state.exit_code == 0
    assert await logs(backend, pod.uid, "main") == b"ok\n"


async def test_a_pod_done_before_its_deadline_is_not_deadline_exceeded(node: Node) -> None:
    backend = await node.backend()
    # The deadline leaves room for a loaded machine to start `true` (a 1 s one did not).
    pod = pod_spec("quick", sh("main", "true"), deadline=5)
    created = time.monotonic()
    await backend.create(pod)
    run = await wait_for(backend, pod.uid, all_terminated, "the pod to end")
    assert time.monotonic() - created < 5, f"the pod took too long to end: {run}"
    await asyncio.sleep(max(0.0, created + 6.5 - time.monotonic()))  # past the deadline
    assert (await backend.list())[pod.uid].reason == ""


@pytest.mark.parametrize("image", ["localhost/does-not-exist:1", "registry.invalid/x:1"])
async def test_a_missing_image_fails_fast(node: Node, image: str) -> None:
    backend = await node.backend()
    pod = pod_spec("noimage", sh("main", "true"), init=(Container("fetch", image),))
    started = time.monotonic()
    with pytest.raises(ImagePullError) as caught:
        await backend.create(pod)
    assert time.monotonic() - started < 15
    assert caught.value.container == "fetch"
    assert image in str(caught.value)
    assert pod.uid not in await backend.list()


async def test_pull_policy_never_needs_the_image_present(node: Node) -> None:
    backend = await node.backend()
    missing = Container("main", "localhost/does-not-exist:1", image_pull_policy="Never")
    with pytest.raises(ImagePullError, match="Never"):
        await backend.create(pod_spec("never", missing))
    present = pod_spec("present", Container("main", IMAGE, ("true",), image_pull_policy="Never"))
    await backend.create(present)
    await wait_for(backend, present.uid, all_terminated, "the pod to end")


async def test_pull_policy_always_pulls_even_a_present_image(node: Node) -> None:
    backend = await node.backend()
    # The image is here, but there is no registry to pull it from: Always must try.
    always = Container("main", IMAGE, ("true",), image_pull_policy="Always")
    with pytest.raises(ImagePullError, match="localhost/busybox"):
        await backend.create(pod_spec("always", always))
    assert await backend.list() == {}


async def test_sigterm_reaches_the_program(node: Node) -> None:
    """busybox sleep as PID 1 would ignore SIGTERM; with Podman's init it ends at once."""
    backend = await node.backend()
    pod = pod_spec("term", Container("main", IMAGE, ("sleep", "300")))
    await backend.create(pod)
    await wait_for(backend, pod.uid, lambda r: isinstance(r.containers[0].state, Running), "run")
    started = time.monotonic()
    await backend.delete(pod.uid, grace_seconds=20)
    assert time.monotonic() - started < 10  # far below the grace period


async def test_the_pod_ip_reaches_env_and_args_before_the_containers_start(node: Node) -> None:
    """status.podIP in env, and $(POD_IP) in args, as the kubelet gives them: the pod's
    network is made first, its address read, then the containers are created."""
    backend = await node.backend()
    pod = pod_spec(
        "podip",
        Container(
            "main",
            IMAGE,
            ("sh", "-c", 'echo "env=$MY_IP"; echo "arg=$0"'),
            args=(f"http://{POD_IP}:8080",),
            env=(EnvVar("MY_IP", POD_IP),),
        ),
    )
    await backend.create(pod)
    run = await wait_for(backend, pod.uid, all_terminated, "the pod to end")
    assert run.pod_ip
    output = (await logs(backend, pod.uid, "main")).decode()
    assert output == f"env={run.pod_ip}\narg=http://{run.pod_ip}:8080\n"
    await backend.delete(pod.uid, grace_seconds=0)


async def test_secret_files_are_private_on_the_host(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec(
        "secret",
        sh("main", "cat /s/token /c/nested/conf", mounts=(Mount("s", "/s"), Mount("c", "/c"))),
        volumes=(
            Volume("s", "files", files=(File("token", b"t0k3n", mode=0o644),), sensitive=True),
            Volume("c", "files", files=(File("nested/conf", b"a=1\n", mode=0o640),)),
        ),
    )
    await backend.create(pod)
    run = await wait_for(backend, pod.uid, all_terminated, "the pod to end")
    assert state(run, "main").state.exit_code == 0
    assert await logs(backend, pod.uid, "main") == b"t0k3na=1\n"
    pod_dir = node.tmp_path / "state" / pod.uid

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(pod_dir) == 0o700  # other users of the host never get in
    assert mode(pod_dir / "volumes" / "s") == 0o755  # any container user gets in
    assert mode(pod_dir / "volumes" / "s" / "token") == 0o644  # the pod's mode
    assert mode(pod_dir / "volumes" / "c" / "nested" / "conf") == 0o640
    assert mode(pod_dir / "containers.json") == 0o600
    await backend.delete(pod.uid, grace_seconds=0)
    assert not pod_dir.exists()


async def podman_inspect(node: Node, container_id: str) -> dict[str, Any]:
    """`podman inspect` itself, as an operator would look."""
    process = await asyncio.create_subprocess_exec(
        "podman",
        "inspect",
        container_id,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "CONTAINERS_CONF": str(node.testbed.podman.containers_conf)},
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    inspected: list[dict[str, Any]] = json.loads(out)
    return inspected[0]


async def test_limits_reach_podman(node: Node) -> None:
    backend = await node.backend()
    limited = Resources(cpu_millis=500, memory_bytes=64 * 1024 * 1024)
    pod = pod_spec("limits", sh("main", "sleep 30", resources=limited))
    await backend.create(pod)
    run = await wait_for(
        backend, pod.uid, lambda r: isinstance(r.containers[0].state, Running), "it to run"
    )
    host_config = (
        await podman_inspect(node, run.containers[0].container_id.removeprefix("podman://"))
    )["HostConfig"]
    assert host_config["Memory"] == 64 * 1024 * 1024
    assert host_config["CpuQuota"] == 50_000 and host_config["CpuPeriod"] == 100_000
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Init"] is True


async def test_the_memory_limit_is_enforced(node: Node) -> None:
    backend = await node.backend()
    hog = sh("main", "head -c 200m /dev/zero | tail", resources=Resources(memory_bytes=16 << 20))
    pod = pod_spec("oom", hog)
    await backend.create(pod)
    run = await wait_for(backend, pod.uid, all_terminated, "the memory kill")
    main = state(run, "main")
    assert main.state.exit_code == 137
    # cgroup v2 tells Podman about OOM kills; on cgroup v1 (these machines) it never does
    cgroup_v2 = await asyncio.to_thread(Path("/sys/fs/cgroup/cgroup.controllers").exists)
    assert main.state.reason == ("OOMKilled" if cgroup_v2 else "Error")


async def test_a_container_that_cannot_start_is_a_start_error(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("nostart", Container("main", IMAGE, ("true",), working_dir="/bin/sh"))
    await backend.create(pod)
    run = await wait_for(backend, pod.uid, all_terminated, "the start error")
    main = state(run, "main")
    assert (main.state.exit_code, main.state.reason) == (128, "StartError")
    assert "not a directory" in main.state.message
    starts = backend.calls["container.start"]
    await asyncio.sleep(1.5)
    assert backend.calls["container.start"] == starts  # restartPolicy Never: no retry


async def test_unsupported_features_are_refused_before_anything_runs(node: Node) -> None:
    backend = await node.backend()
    gpu = pod_spec("gpu", Container("main", IMAGE, resources=Resources(gpus=1)))
    with pytest.raises(UnsupportedPodFeature, match="GPU"):
        await backend.create(gpu)
    host = pod_spec(
        "hostpath",
        Container("main", IMAGE, mounts=(Mount("etc", "/host"),)),
        volumes=(Volume("etc", "hostPath", host_path="/etc"),),
    )
    with pytest.raises(UnsupportedPodFeature, match="hostPath"):
        await backend.create(host)
    assert await backend.list() == {}


async def test_allowed_host_path_memory_volume_and_sub_path(node: Node) -> None:
    shared = node.tmp_path / "shared"
    shared.mkdir()
    (shared / "greeting").write_text("hello from the host\n")
    backend = await node.backend(allowed_host_paths=[str(shared)])
    mem = Mount("mem", "/mem")
    pod = pod_spec(
        "hostpath",
        sh(
            "main",
            "cat /host/greeting; cat /mem/note; cat /sub/file; echo written > /host/out",
            mounts=(Mount("host", "/host"), mem, Mount("data", "/sub", sub_path="deep")),
        ),
        init=(sh("writer", "echo in memory > /mem/note", mounts=(mem,)),),
        volumes=(
            Volume("host", "hostPath", host_path=str(shared)),
            Volume("mem", "emptyDir", medium="Memory"),
            Volume("data", "files", files=(File("deep/file", b"sub path\n"),)),
        ),
    )
    await backend.create(pod)
    run = await wait_for(backend, pod.uid, all_terminated, "the pod to end")
    assert state(run, "main").state.exit_code == 0, await logs(backend, pod.uid, "main")
    assert await logs(backend, pod.uid, "main") == b"hello from the host\nin memory\nsub path\n"
    assert (shared / "out").read_text() == "written\n"
    await backend.delete(pod.uid, grace_seconds=0)
    assert not (node.tmp_path / "memory" / pod.uid).exists()


async def test_a_pod_created_half_way_is_never_run_but_made_again(node: Node) -> None:
    backend = await node.backend()
    pod = pod_spec("half", sh("main", "echo whole"), sh("side", "true"))
    # What a crash between creating the Podman pod and its last container leaves behind:
    await backend.api.create_pod(
        podman_spec.pod_body(pod, node=node.name, network="bridge", deadline=None)
    )
    bodies = podman_spec.container_bodies(pod, node=node.name, volumes={}, deadline=None)
    await backend.api.create_container(bodies["main"])
    await asyncio.sleep(1)  # the driver has seen it, and must not start it
    # Not reported (it would be adopted and never start), and removed by the listing.
    assert pod.uid not in await backend.list()
    labels = {podman_spec.UID: pod.uid, podman_spec.NODE: node.name}
    assert await backend.api.list_containers(labels) == []
    await backend.create(pod)
    await wait_for(
        backend, pod.uid, lambda r: len(r.containers) == 2 and all_terminated(r), "the whole pod"
    )
    assert await logs(backend, pod.uid, "main") == b"whole\n"


async def test_private_podman_service_leaves_pods_running(node: Node) -> None:
    own = await node.backend(socket=None)
    assert own.api.socket != str(node.testbed.podman.socket)
    pod = pod_spec("private", sh("main", "sleep 300"))
    await own.create(pod)
    await wait_for(own, pod.uid, lambda r: isinstance(r.containers[0].state, Running), "run")
    socket = Path(own.api.socket)
    await own.close()
    assert not await asyncio.to_thread(socket.exists)
    other = await node.backend()
    assert isinstance((await other.list())[pod.uid].containers[0].state, Running)


async def test_status_changes_arrive_through_events(node: Node) -> None:
    backend = await node.backend(resync_seconds=3600)
    pod = pod_spec("events", sh("main", "sleep 1; exit 5"))
    lists_before = backend.calls["container.list"]
    created = time.time()
    await backend.create(pod)

    # The pod's infra container starts first: a push may come before its app container.
    def pushed() -> list[tuple[float, PodRun]]:
        return [(t, r) for t, r in node.changes if r.uid == pod.uid and r.containers]

    def last_pushed() -> PodRun | None:
        mine = pushed()
        return mine[-1][1] if mine else None

    await eventually(
        last_pushed,
        what="the end pushed",
        timeout=TIMEOUT,
        interval=0.05,
        until=lambda r: r is not None and isinstance(r.containers[0].state, Terminated),
    )
    states = [r.containers[0].state for _, r in pushed()]
    assert any(isinstance(s, Running) for s in states)
    assert isinstance(states[-1], Terminated) and states[-1].exit_code == 5
    ended = states[-1].finished_at.timestamp()
    told = next(t for t, r in pushed() if isinstance(r.containers[0].state, Terminated))
    assert told - ended < 3.0, "the end was not pushed promptly"
    assert told - created < 1 + 4.0
    # only event-driven refreshes listed containers: a handful, not a poll loop
    assert backend.calls["container.list"] - lists_before < 12


async def test_health_and_capacity(node: Node) -> None:
    backend = await node.backend()
    assert (await backend.health()).ok
    capacity = await backend.capacity()
    assert capacity is not None
    assert capacity.cpu_millis == (os.cpu_count() or 0) * 1000
    assert capacity.memory_bytes > 0 and capacity.pods == 110


async def test_an_unreachable_podman_is_reported(node: Node, tmp_path: Path) -> None:
    nowhere = PodmanBackend(node.config(socket=str(tmp_path / "nothing.sock")), node_name="x")
    with pytest.raises(BackendUnavailable, match="podman"):
        await nowhere.start()
    owner = await node.backend(socket=None)  # its own service, which we then stop
    user = await node.backend(socket=owner.api.socket)
    assert (await user.health()).ok
    await owner.close()
    health = await user.health()
    assert not health.ok and health.message


async def test_lifecycle_costs_few_api_calls(node: Node) -> None:
    """Measures the Podman API calls for one one-container pod, create to delete, and
    the time from create() to the Running status being pushed."""
    backend = await node.backend(resync_seconds=3600)
    await asyncio.sleep(0.5)  # the start-up resync is done
    before = dict(backend.calls)
    pod = pod_spec("measure", Container("main", IMAGE, ("sleep", "1"), env=(EnvVar("A", "b"),)))

    async def pushed(predicate: Callable[[PodRun], bool]) -> float:
        while True:
            for moment, run in node.changes:
                if run.uid == pod.uid and predicate(run):
                    return moment
            await asyncio.sleep(0.01)

    started = time.time()
    await backend.create(pod)
    running = await asyncio.wait_for(
        pushed(lambda r: isinstance(r.containers[0].state, Running)), TIMEOUT
    )
    await asyncio.wait_for(pushed(all_terminated), TIMEOUT)
    await asyncio.sleep(0.5)  # let the last events settle
    await backend.delete(pod.uid, grace_seconds=0)
    await asyncio.sleep(0.5)  # and the removal's
    calls = {k: v - before.get(k, 0) for k, v in backend.calls.items() if v != before.get(k, 0)}
    total = sum(calls.values())
    print(f"\nPodman API calls for one pod's lifecycle: {total} {calls}")
    print(f"create() -> Running pushed: {running - started:.3f}s")
    assert running - started < 3.0
    assert total <= 25


async def logs(
    backend: PodmanBackend, uid: str, container: str, options: LogOptions | None = None
) -> bytes:
    return b"".join([c async for c in backend.logs(uid, container, options or LogOptions())])
