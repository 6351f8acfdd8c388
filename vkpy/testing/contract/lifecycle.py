"""The contract's checks of what outlives a moment: a pod's deadline, and the pods a
backend object leaves behind for the next one (an agent restarted after a crash)."""

from __future__ import annotations

import asyncio
import time

from vkpy.backend import PodRun, Running
from vkpy.testing.contract.harness import (
    Harness,
    ended,
    expect,
    present,
    status_of,
    terminated,
)

DEADLINE_SECONDS = 3


def running(run: PodRun | None) -> bool:
    return run is not None and any(isinstance(c.state, Running) for c in run.containers)


async def check_deadline_ends_the_pod(h: Harness) -> None:
    """activeDeadlineSeconds ends a running pod in time, restartPolicy Always
    notwithstanding: reason DeadlineExceeded with a message, the container killed (exit
    137 or 143) and never restarted."""
    pod = h.pod(
        "deadline",
        [h.container("main", "sleep 300")],
        restart_policy="Always",
        active_deadline_seconds=DEADLINE_SECONDS,
    )
    began = time.monotonic()
    await h.create(pod)
    run = present(
        pod.uid,
        await h.wait_for(
            pod.uid,
            lambda r: ended(r) and r is not None and r.reason == "DeadlineExceeded",
            "the deadline to end the pod",
        ),
    )
    took = time.monotonic() - began
    allowed = DEADLINE_SECONDS + pod.termination_grace_period_seconds + h.traits.deadline_slack
    expect(took < allowed, f"the pod ended {took:.1f}s after create(), allowed {allowed:g}s")
    expect(bool(run.message), f"no message says why the pod ended: {run}")
    main = status_of(run, "main")
    state = terminated(main)
    expect(state.exit_code in (137, 143), f"exit code {state.exit_code}, expected 137 or 143")
    reason = h.traits.deadline_container_reason
    expect(state.reason == reason, f"container reason {state.reason!r}, expected {reason!r}")
    if h.traits.restart_backoff is not None:
        await asyncio.sleep(h.traits.restart_backoff + 0.5)  # a restart would have come
    run = present(pod.uid, (await h.backend.list()).get(pod.uid))
    expect(run.reason == "DeadlineExceeded", f"the reason changed: {run}")
    main = status_of(run, "main")
    expect(main.restart_count == 0, f"restarted after its deadline: {main}")


async def check_a_new_backend_adopts_the_pods(h: Harness) -> None:
    """A second backend object on the same host and node lists the first one's pods as
    they are, restarts what they would have, and never creates one again."""
    host = h.requires_host()
    long = h.pod("long", [h.container("main", "sleep 300")])
    short = h.pod("short", [h.container("main", "echo done")])
    crashing = h.pod("crashing", [h.container("main", "exit 1")], restart_policy="OnFailure")
    for pod in (long, short, crashing):
        await h.create(pod)
    await h.wait_for(short.uid, ended, "the short pod to end")
    await h.wait_for(long.uid, running, "the long pod to run")
    before = await h.backend.list()
    second = await h.restarted()
    adopted = await second.list()
    expected = {long.uid, short.uid, crashing.uid}
    expect(set(adopted) == expected, f"adopted {sorted(adopted)}, expected {sorted(expected)}")
    for uid in (long.uid, short.uid):
        then, now = before[uid], adopted[uid]
        expect(now.job_id == then.job_id, f"job ID {now.job_id!r}, was {then.job_id!r}")
        expect(
            (now.namespace, now.name) == (then.namespace, then.name),
            f"adopted as {now.namespace}/{now.name}, was {then.namespace}/{then.name}",
        )
    expect(running(adopted[long.uid]), f"the long pod is not running: {adopted[long.uid]}")
    expect(
        adopted[short.uid].containers[0].state == before[short.uid].containers[0].state,
        f"the short pod's state changed: {before[short.uid]} then {adopted[short.uid]}",
    )
    if h.traits.restart_backoff is not None:  # the new backend does the restarts now
        await h.wait_for(
            crashing.uid,
            lambda r: r is not None and bool(r.containers) and r.containers[0].restart_count >= 1,
            "the crashing pod to restart",
        )
    await second.create(long)  # an adopted pod is never created again
    expect(host.submissions(second) == 0, "the adopting backend submitted a pod again")
    instances = await host.instances(second, long.uid)
    expect(
        instances == [before[long.uid].job_id],
        f"the host holds {instances}, expected only {before[long.uid].job_id!r}",
    )
    after = status_of((await second.list())[long.uid], "main")
    first = status_of(before[long.uid], "main")
    expect(
        after.container_id == first.container_id and after.restart_count == 0,
        f"the long pod's container ran again: {first} then {after}",
    )
