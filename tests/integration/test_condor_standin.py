"""The HTCondor stand-in on the login node, over the real sshd, as the backend uses it."""

import json
import shlex
import uuid

from vkpy.testing.waiting import eventually


async def _submit(login_node, body: str, workdir: str = "") -> int:
    workdir = workdir or f"standin-{uuid.uuid4().hex[:8]}"
    await login_node.run(f"mkdir -p {workdir}", check=True)
    result = await login_node.run(f"cd {workdir} && condor_submit -", input=body, check=True)
    assert "job(s) submitted to cluster" in result.stdout
    return int(result.stdout.rsplit("cluster ", 1)[1].rstrip(".\n"))


async def _ads(login_node, command: str, cluster: int) -> list[dict]:
    result = await login_node.run(f"{command} -json {cluster}", check=True)
    return json.loads(result.stdout) if result.stdout.strip() else []


async def _wait(login_node, command, cluster, predicate):
    ads = await eventually(
        lambda: _ads(login_node, command, cluster),
        what=f"{command} {cluster}",
        timeout=10,
        interval=0.1,
        until=lambda found: bool(found) and predicate(found[0]),
    )
    return ads[0]


async def test_a_job_runs_and_leaves_the_queue_with_its_exit_code(login_node):
    uid = uuid.uuid4().hex
    workdir = f"standin-{uid[:8]}"
    # The job ends only once the test has seen it run: a slow poll never misses the window.
    cluster = await _submit(
        login_node,
        (
            "executable = /bin/sh\n"
            "arguments = \"-c 'echo started; until [ -e release ]; do sleep 0.1; done; exit 3'\"\n"
            f'output = out.txt\nerror = err.txt\n+VkpyPodUID = "{uid}"\nqueue\n'
        ),
        workdir,
    )
    running = await _wait(login_node, "condor_q", cluster, lambda ad: ad["JobStatus"] == 2)
    assert running["VkpyPodUID"] == uid
    await login_node.run(f"touch {workdir}/release", check=True)
    done = await _wait(login_node, "condor_history", cluster, lambda ad: ad["JobStatus"] == 4)
    assert (done["ExitCode"], done["ExitBySignal"]) == (3, False)
    assert await _ads(login_node, "condor_q", cluster) == []
    constrained = await login_node.run(
        f"condor_history -json -constraint {shlex.quote(f'VkpyPodUID == {json.dumps(uid)}')}",
        check=True,
    )
    assert [ad["ClusterId"] for ad in json.loads(constrained.stdout)] == [cluster]


async def test_removal_and_signals_and_duration_holds(login_node):
    running = await _submit(login_node, 'executable = /bin/sleep\narguments = "60"\nqueue\n')
    await _wait(login_node, "condor_q", running, lambda ad: ad["JobStatus"] == 2)
    removed = await login_node.run(f"condor_rm {running}", check=True)
    assert f"All jobs in cluster {running} have been marked for removal" in removed.stdout
    assert (await _wait(login_node, "condor_history", running, lambda ad: ad["JobStatus"] == 3))[
        "RemoveReason"
    ].startswith("via condor_rm")
    again = await login_node.run(f"condor_rm {running}")
    assert again.exit_status == 1
    killed = await _submit(
        login_node, "executable = /bin/sh\narguments = \"-c 'kill -9 $$'\"\nqueue\n"
    )
    ad = await _wait(login_node, "condor_history", killed, lambda ad: ad["JobStatus"] == 4)
    assert (ad["ExitBySignal"], ad["ExitSignal"]) == (True, 9)
    held = await _submit(
        login_node, 'executable = /bin/sleep\narguments = "30"\nallowed_job_duration = 1\nqueue\n'
    )
    ad = await _wait(login_node, "condor_q", held, lambda ad: ad["JobStatus"] == 5)
    assert ad["HoldReasonCode"] == 46
    assert ad["HoldReason"] == "The job exceeded allowed job duration of 1"
    await login_node.run(f"condor_rm {held}", check=True)
