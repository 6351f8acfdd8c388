"""The contract's checks of a pod's life: it runs, exits, runs its init containers first,
is created once, deleted for good, and gets its env, args and files intact."""

from __future__ import annotations

import asyncio
import uuid

from vkpy.backend import EnvVar, File, Mount, Running, Terminated, Volume
from vkpy.testing.contract.harness import (
    HEX,
    HOSTILE_VALUES,
    ContractFailure,
    Harness,
    expect,
    hex_lines,
    status_of,
    terminated,
)


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
