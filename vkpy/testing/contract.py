"""The backend contract: checks every backend passes, whatever it runs pods on.

Each check is a plain async function of a `Harness`, which wraps a started backend,
builds pods on a busybox image, waits on ``list()`` (so it needs no push support),
and deletes every pod it created when it closes. A backend's integration tests run
them all::

    @pytest.mark.parametrize("check", contract.CHECKS, ids=contract.check_id)
    async def test_contract(check, backend):
        async with contract.Harness(backend) as harness:
            await check(harness)

The checks only use the `Backend` and `LogReader` protocols; nothing here knows which
backend it is talking to. A failed check raises `ContractFailure` saying what was
expected and what the backend last reported.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from vkpy.backend import (
    Backend,
    Container,
    ContainerStatus,
    EnvVar,
    File,
    LogOptions,
    LogReader,
    Mount,
    PodRun,
    PodSpec,
    RestartPolicy,
    Running,
    Terminated,
    Volume,
    Waiting,
)

IMAGE = "localhost/busybox:latest"

# Values that break anything passing them through a shell, a script or a file format.
HOSTILE_VALUES = (
    "plain",
    "it's \"double\" and 'single' quoted",
    "$(touch /tmp/pwned) `touch /tmp/pwned` ${HOME} $HOME $$ $0 $1",
    "; | & && || > < >> 2>&1 * ? [a-z] ~ # !",
    "line one\nline two\n\ttabbed\r\nlast",
    "unicode: é ü 日本語 🚀 \u202e reversed",
    "back\\slash \\n not a newline %s %d %n \\",
    "  leading and trailing spaces  ",
    "",
    "=starts with equals=",
    "\x1b[31mterminal escape\x1b[0m",
)
# Prints one ``NAME:<hex of the value>`` line per variable, so any byte can be compared.
HEX = "od -An -v -tx1 | tr -d ' \\n'"


class ContractFailure(AssertionError):
    """The backend broke the contract."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractFailure(message)


@dataclass
class Harness:
    """A started backend plus the means to run checks on it and clean up after them."""

    backend: Backend
    image: str = IMAGE
    timeout: float = 60.0
    poll_seconds: float = 0.2
    prefix: str = "contract"
    created: list[str] = field(default_factory=list)

    async def __aenter__(self) -> Harness:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for uid in reversed(self.created):
            await self.backend.delete(uid, grace_seconds=0)

    # ------------------------------------------------------------ building pods

    def container(
        self,
        name: str,
        script: str,
        *,
        args: Sequence[str] = (),
        env: Sequence[EnvVar] = (),
        mounts: Sequence[Mount] = (),
    ) -> Container:
        """A busybox container running ``sh -c script`` (``args`` become $1...)."""
        command = ("sh", "-c", script, name, *args)
        return Container(
            name=name, image=self.image, command=command, env=tuple(env), mounts=tuple(mounts)
        )

    def pod(
        self,
        name: str,
        containers: Sequence[Container],
        *,
        init_containers: Sequence[Container] = (),
        volumes: Sequence[Volume] = (),
        restart_policy: RestartPolicy = "Never",
    ) -> PodSpec:
        return PodSpec(
            uid=str(uuid.uuid4()),
            namespace="contract",
            name=f"{self.prefix}-{name}",
            containers=tuple(containers),
            init_containers=tuple(init_containers),
            volumes=tuple(volumes),
            restart_policy=restart_policy,
            termination_grace_period_seconds=2,
        )

    # ------------------------------------------------------------ driving the backend

    async def create(self, pod: PodSpec) -> None:
        if pod.uid not in self.created:
            self.created.append(pod.uid)
        await self.backend.create(pod)

    async def wait_for(
        self, uid: str, predicate: Callable[[PodRun | None], bool], what: str
    ) -> PodRun | None:
        """Poll ``list()`` until ``predicate`` holds for the pod's record (None: absent)."""
        deadline = time.monotonic() + self.timeout
        run: PodRun | None = None
        while True:
            run = (await self.backend.list()).get(uid)
            if predicate(run):
                return run
            if time.monotonic() > deadline:
                raise ContractFailure(
                    f"timed out after {self.timeout:g}s waiting for {what}; last record: {run}"
                )
            await asyncio.sleep(self.poll_seconds)

    async def finished(self, uid: str) -> PodRun:
        """The pod's record once every app container has terminated."""
        run = await self.wait_for(
            uid,
            lambda r: (
                r is not None
                and bool(r.containers)
                and all(isinstance(c.state, Terminated) for c in r.containers)
            ),
            "every container to terminate",
        )
        if run is None:
            raise ContractFailure(f"pod {uid} vanished")
        return run

    async def logs(self, uid: str, container: str, options: LogOptions | None = None) -> bytes:
        backend = self.backend
        if not isinstance(backend, LogReader):
            raise ContractFailure(f"{type(backend).__name__} does not implement LogReader")
        chunks = [chunk async for chunk in backend.logs(uid, container, options or LogOptions())]
        return b"".join(chunks)


def status_of(run: PodRun, name: str, *, init: bool = False) -> ContainerStatus:
    statuses = run.init_containers if init else run.containers
    for candidate in statuses:
        if candidate.name == name:
            return candidate
    raise ContractFailure(f"no status for container {name} in {run}")


def terminated(status: ContainerStatus) -> Terminated:
    if not isinstance(status.state, Terminated):
        raise ContractFailure(f"{status.name} is not terminated: {status}")
    return status.state


def hex_lines(output: bytes) -> dict[str, bytes]:
    """``NAME:<hex>`` lines of the output, decoded."""
    found: dict[str, bytes] = {}
    for line in output.decode("ascii", errors="replace").splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_./-]+):([0-9a-f]*)", line.strip())
        if match:
            found[match[1]] = bytes.fromhex(match[2])
    return found


# ---------------------------------------------------------------- the checks


async def check_pod_runs_to_completion(h: Harness) -> None:
    """create → list shows it → it runs → it terminates with exit 0, reason Completed."""
    pod = h.pod("completes", [h.container("main", "sleep 2; exit 0")])
    await h.create(pod)
    await h.wait_for(pod.uid, lambda r: r is not None, "the pod to be listed")
    await h.wait_for(
        pod.uid,
        lambda r: (
            r is not None and any(isinstance(c.state, Running | Terminated) for c in r.containers)
        ),
        "the container to run",
    )
    run = await h.finished(pod.uid)
    expect(
        (run.uid, run.namespace, run.name) == (pod.uid, pod.namespace, pod.name),
        f"the record names another pod: {run}",
    )
    main = status_of(run, "main")
    state = terminated(main)
    expect(state.exit_code == 0, f"exit code {state.exit_code}, expected 0")
    expect(state.reason == "Completed", f"reason {state.reason!r}, expected 'Completed'")
    if state.started_at is None or state.finished_at is None:
        raise ContractFailure(f"start or finish time unset: {state}")
    expect(
        state.finished_at.replace(microsecond=0) >= state.started_at.replace(microsecond=0),
        f"finished before it started: {state}",
    )
    expect(main.restart_count == 0, f"restart count {main.restart_count}, expected 0")
    expect(bool(main.container_id), f"no container ID: {main}")


async def check_exit_code_is_reported(h: Harness) -> None:
    """A container that exits 3 is Terminated(exit_code=3, reason=Error), not restarted."""
    pod = h.pod("exit3", [h.container("main", "exit 3")])
    await h.create(pod)
    run = await h.finished(pod.uid)
    main = status_of(run, "main")
    state = terminated(main)
    expect(state.exit_code == 3, f"exit code {state.exit_code}, expected 3")
    expect(state.reason == "Error", f"reason {state.reason!r}, expected 'Error'")
    expect(main.restart_count == 0, f"restarted under restartPolicy Never: {main}")


async def check_init_containers_run_first(h: Harness) -> None:
    """Init containers run one after the other, to completion, before the app container."""
    shared = Mount("shared", "/shared")
    pod = h.pod(
        "init-order",
        [
            h.container(
                "main", 'test "$(cat /shared/order)" = "$(printf "one\\ntwo")"', mounts=[shared]
            )
        ],
        init_containers=[
            h.container("first", "sleep 1; echo one > /shared/order", mounts=[shared]),
            h.container("second", "echo two >> /shared/order", mounts=[shared]),
        ],
        volumes=[Volume("shared", "emptyDir")],
    )
    await h.create(pod)
    run = await h.finished(pod.uid)
    expect(
        [c.name for c in run.init_containers] == ["first", "second"],
        f"init containers reported out of order: {run.init_containers}",
    )
    first = terminated(status_of(run, "first", init=True))
    second = terminated(status_of(run, "second", init=True))
    main = terminated(status_of(run, "main"))
    for name, state in (("first", first), ("second", second)):
        expect(state.exit_code == 0, f"init container {name} failed: {state}")
    expect(main.exit_code == 0, f"the app container did not see the init containers' work: {main}")
    if first.finished_at and second.started_at:
        expect(
            second.started_at.replace(microsecond=0) >= first.finished_at.replace(microsecond=0),
            f"second init container started before the first ended: {first} / {second}",
        )
    if second.finished_at and main.started_at:
        expect(
            main.started_at.replace(microsecond=0) >= second.finished_at.replace(microsecond=0),
            f"the app container started before the init containers ended: {second} / {main}",
        )


async def check_create_is_idempotent(h: Harness) -> None:
    """Creating a pod again (in turn or at once) never starts it a second time."""
    pod = h.pod("twice", [h.container("main", "echo started; sleep 3")])
    await h.create(pod)
    run = await h.wait_for(
        pod.uid,
        lambda r: r is not None and any(isinstance(c.state, Running) for c in r.containers),
        "the container to run",
    )
    first = status_of(run, "main") if run else None
    await h.create(pod)
    await asyncio.gather(h.create(pod), h.create(pod))
    run = await h.finished(pod.uid)
    listed = [uid for uid in await h.backend.list() if uid == pod.uid]
    expect(len(listed) == 1, f"the pod is listed {len(listed)} times")
    main = status_of(run, "main")
    expect(
        first is not None and main.container_id == first.container_id,
        f"another container runs the pod now: {first} then {main}",
    )
    expect(main.restart_count == 0, f"the container ran again: {main}")
    expect(len(run.containers) == 1, f"more containers than the pod has: {run.containers}")
    output = await h.logs(pod.uid, "main")
    expect(output.count(b"started") == 1, f"the container started more than once: {output!r}")


async def check_delete_returns_when_gone(h: Harness) -> None:
    """delete() returns once the pod is gone from list(), even if it ignores SIGTERM;
    deleting it again, or a pod never seen, is fine."""
    pod = h.pod("delete", [h.container("main", "trap '' TERM; while true; do sleep 1; done")])
    await h.create(pod)
    await h.wait_for(
        pod.uid,
        lambda r: r is not None and any(isinstance(c.state, Running) for c in r.containers),
        "the container to run",
    )
    await h.backend.delete(pod.uid, grace_seconds=1)
    expect(pod.uid not in await h.backend.list(), "the pod is still listed after delete()")
    await h.backend.delete(pod.uid, grace_seconds=1)
    await h.backend.delete(str(uuid.uuid4()), grace_seconds=0)


async def check_env_and_args_are_intact(h: Harness) -> None:
    """Env values and args with quotes, $(...), backticks, ;|&, newlines and unicode reach
    the program byte for byte, and nothing in them is executed."""
    names = [f"V{i}" for i in range(len(HOSTILE_VALUES))]
    lines = [f'echo "{n}:$(printf %s "${n}" | {HEX})"' for n in names]
    lines += [
        f'echo "A{i}:$(printf %s "${{{i + 1}}}" | {HEX})"' for i in range(len(HOSTILE_VALUES))
    ]
    lines.append("if [ -e /tmp/pwned ]; then echo PWNED; fi")
    env = [EnvVar(n, v) for n, v in zip(names, HOSTILE_VALUES, strict=True)]
    pod = h.pod("env", [h.container("main", "\n".join(lines), args=HOSTILE_VALUES, env=env)])
    await h.create(pod)
    run = await h.finished(pod.uid)
    state = terminated(status_of(run, "main"))
    expect(state.exit_code == 0, f"the checking script failed: {state}")
    output = await h.logs(pod.uid, "main")
    expect(b"PWNED" not in output, "a value was executed as a command")
    seen = hex_lines(output)
    for i, value in enumerate(HOSTILE_VALUES):
        for key in (f"V{i}", f"A{i}"):
            expect(key in seen, f"{key} missing from the output: {output!r}")
            expect(
                seen[key] == value.encode(),
                f"{key}: expected {value.encode()!r}, the program saw {seen[key]!r}",
            )


async def check_files_volume_is_visible(h: Harness) -> None:
    """A ``files`` volume (ConfigMap/Secret data) shows every file with its exact bytes,
    nested paths included, and is read-only."""
    files = (
        File("config.yaml", b"key: value\nother: 'quoted'\n"),
        File("nested/deeper/blob.bin", bytes(range(256))),
        File("empty", b""),
    )
    secret = (File("token", b"s3cr3t-\x00-\xff\n"),)
    checks = [f'echo "{f.path}:$(cat /etc/data/{f.path} | {HEX})"' for f in files]
    checks += [f'echo "{f.path}:$(cat /etc/secret/{f.path} | {HEX})"' for f in secret]
    checks.append("if touch /etc/data/new 2>/dev/null; then echo WRITABLE; fi")
    pod = h.pod(
        "files",
        [
            h.container(
                "main",
                "\n".join(checks),
                mounts=[Mount("data", "/etc/data"), Mount("secret", "/etc/secret")],
            )
        ],
        volumes=[
            Volume("data", "files", files=files),
            Volume("secret", "files", files=secret, sensitive=True),
        ],
    )
    await h.create(pod)
    run = await h.finished(pod.uid)
    state = terminated(status_of(run, "main"))
    expect(state.exit_code == 0, f"the checking script failed: {state}")
    output = await h.logs(pod.uid, "main")
    expect(b"WRITABLE" not in output, "the files volume is writable")
    seen = hex_lines(output)
    for file in (*files, *secret):
        expect(file.path in seen, f"{file.path} missing from the output: {output!r}")
        expect(
            seen[file.path] == file.content, f"{file.path}: content differs: {seen[file.path]!r}"
        )


async def check_logs_hold_the_output(h: Harness) -> None:
    """logs(): stdout and stderr, tail_lines, limit_bytes, and follow ending with the container."""
    pod = h.pod(
        "logs",
        [
            h.container("out", "for i in 1 2 3 4 5; do echo line-$i; done"),
            h.container("err", "echo to-stderr >&2"),
            h.container("ticks", "for i in 1 2 3; do echo tick-$i; sleep 0.5; done"),
        ],
    )
    await h.create(pod)
    await h.wait_for(
        pod.uid,
        lambda r: (
            r is not None
            and any(c.name == "ticks" and not isinstance(c.state, Waiting) for c in r.containers)
        ),
        "the ticking container to start",
    )
    # follow while the container runs: the stream must end by itself when it stops
    followed = await asyncio.wait_for(
        h.logs(pod.uid, "ticks", LogOptions(follow=True)), timeout=h.timeout
    )
    expect(followed == b"tick-1\ntick-2\ntick-3\n", f"followed logs: {followed!r}")
    await h.finished(pod.uid)
    everything = await h.logs(pod.uid, "out")
    expect(everything == b"".join(b"line-%d\n" % i for i in range(1, 6)), f"logs: {everything!r}")
    tail = await h.logs(pod.uid, "out", LogOptions(tail_lines=2))
    expect(tail == b"line-4\nline-5\n", f"tail_lines=2 gave {tail!r}")
    limited = await h.logs(pod.uid, "out", LogOptions(limit_bytes=8))
    expect(limited == b"line-1\nl", f"limit_bytes=8 gave {limited!r}")
    errors = await h.logs(pod.uid, "err")
    expect(b"to-stderr" in errors, f"stderr is missing from the logs: {errors!r}")


Check = Callable[[Harness], Awaitable[None]]

CHECKS: tuple[Check, ...] = (
    check_pod_runs_to_completion,
    check_exit_code_is_reported,
    check_init_containers_run_first,
    check_create_is_idempotent,
    check_delete_returns_when_gone,
    check_env_and_args_are_intact,
    check_files_volume_is_visible,
    check_logs_hold_the_output,
)


def check_id(check: Check) -> str:
    return getattr(check, "__name__", repr(check)).removeprefix("check_")
