"""`vkpy run` with the Slurm backend (.testbed/slurm.yaml) against the real control plane:
pods placed by the real scheduler run as jobs of the testbed's Slurm 22.05, submitted
over the real sshd as the unprivileged login user; `kubectl logs` through the apiserver.
The daemons behind the node (slurmctld, sshd) are restarted while pods run, and the network
to the login node is cut."""

import asyncio
import contextlib
import os
import pwd
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.backends.slurm.naming import JOB_PREFIX
from vkpy.kube.client import Kube
from vkpy.testing import loginns, slurm, sshd
from vkpy.testing.processes import Supervisor
from vkpy.testing.slurm_config import ssh_section
from vkpy.testing.testbed import Testbed
from vkpy.testing.waiting import eventually

from .helpers import (
    AgentProcess,
    events_for,
    kubectl,
    logs_become,
    node_ready,
    pod_for,
    pod_phase,
    running_agent,
)

NS = "default"
IMAGE = "localhost/busybox:latest"
SUBMITTED = re.compile(r"pod default/(\S+) \(uid [^)]*\): submitted as Slurm job (\d+)")
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED"}


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


def submissions(agent: AgentProcess) -> dict[str, list[str]]:
    """Pod name → the Slurm jobs the agent submitted for it, from its log."""
    found: dict[str, list[str]] = {}
    for pod, job in SUBMITTED.findall(agent.log.read_text(errors="replace")):
        found.setdefault(pod, []).append(job)
    return found


def node_jobs(node: str) -> list[str]:
    """The node's jobs Slurm still runs or queues: ``JOBID STATE`` each."""
    done = subprocess.run(
        ["squeue", "-h", "-o", "%i %T %j"], capture_output=True, text=True, check=True
    )
    prefix = f"{JOB_PREFIX}{node}_"
    return [" ".join(line.split()[:2]) for line in done.stdout.splitlines() if prefix in line]


def work_dir(testbed, node: str) -> Path:
    """The node's work directory on the login node (the same machine here)."""
    return Path(pwd.getpwnam(testbed.ssh.user).pw_dir) / "vkpy" / node


@contextlib.asynccontextmanager
async def slurm_agent(testbed, kube, tmp_path, prefix: str, **settings):
    """`vkpy run` with .testbed/slurm.yaml for a node of its own; on the way out every
    pod is deleted and the node must have left no job and no work directory behind."""
    node = f"{prefix}-{uuid.uuid4().hex[:6]}"
    base = work_dir(testbed, node)

    async def drained() -> bool:
        return not node_jobs(node) and not any(await asyncio.to_thread(_entries, base))

    process = AgentProcess(testbed, tmp_path, node, "slurm.yaml", **settings)
    async with running_agent(kube, process, drained=drained) as agent:
        yield agent
    left = node_jobs(node) + [str(p) for p in await asyncio.to_thread(_entries, base)]
    assert not left, f"node {node} left behind: {left}"
    with contextlib.suppress(FileNotFoundError):
        base.rmdir()


def _entries(base: Path) -> list[Path]:
    return list(base.iterdir()) if base.exists() else []


def job_state(job_id: str) -> str:
    """The job's state as Slurm's own client says (root sees every user's jobs)."""
    done = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
        capture_output=True,
        text=True,
    )  # SLURM_CONF: set by the testbed fixture
    return done.stdout.strip() or f"(not in squeue: {done.stderr.strip()})"


async def get(kube: Kube, name: str) -> dict:
    return await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}")


async def phase(kube: Kube, name: str, *phases: str) -> bool:
    return await pod_phase(kube, NS, name) in phases


def terminated(pod: dict, container: str = "main") -> dict:
    (status,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == container]
    return status["state"].get("terminated") or {}


def shell(name: str, script: str, **fields) -> dict:
    return {"name": name, "image": IMAGE, "command": ["sh", "-c", script], **fields}


async def test_pods_run_log_fail_adopt_and_delete(login_user, kube, tmp_path):
    async with slurm_agent(login_user, kube, tmp_path, "slurm-e2e") as agent:
        await _pods_run_log_fail_adopt_and_delete(login_user, kube, agent)


async def _pods_run_log_fail_adopt_and_delete(testbed, kube, agent):
    create = f"/api/v1/namespaces/{NS}/"
    await kube.create(
        create + "configmaps", {"metadata": {"name": agent.name}, "data": {"k": "from-cm"}}
    )
    await kube.create(
        create + "secrets", {"metadata": {"name": agent.name}, "stringData": {"t": "s3cr3t"}}
    )
    marker = f"/tmp/{agent.name}-executed"  # written only if quoting fails
    hostile = f'it\'s "q" $(touch {marker}) `touch {marker}` ;|& $HOME \\ %s ünï ✓\nline2'
    main = shell(
        "main",
        'cat /cm/k /sec/t /w/init; echo " $POD"; printf "%s|%s" "$1" "$H"; exec sleep 300',
        args=["sh", hostile],
        env=[
            {"name": "H", "value": hostile},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        volumeMounts=[
            {"name": "cm", "mountPath": "/cm"},
            {"name": "sec", "mountPath": "/sec", "readOnly": True},
            {"name": "w", "mountPath": "/w"},
        ],
    )
    ticker = shell("ticker", 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 1; done')
    init = shell(
        "init", "echo from-init > /w/init", volumeMounts=[{"name": "w", "mountPath": "/w"}]
    )
    full = f"{agent.name}-full"
    pods = {
        full: pod_for(
            agent.name,
            full,
            [main, ticker],
            kind="slurm",
            initContainers=[init],
            volumes=[
                {"name": "cm", "configMap": {"name": agent.name}},
                {"name": "sec", "secret": {"secretName": agent.name}},
                {"name": "w", "emptyDir": {}},
            ],
        ),
        f"{agent.name}-ok": pod_for(
            agent.name, f"{agent.name}-ok", [shell("main", "true")], kind="slurm"
        ),
        f"{agent.name}-exit3": pod_for(
            agent.name, f"{agent.name}-exit3", [shell("main", "exit 3")], kind="slurm"
        ),
        f"{agent.name}-deadline": pod_for(
            agent.name,
            f"{agent.name}-deadline",
            [shell("main", "exec sleep 300")],
            kind="slurm",
            activeDeadlineSeconds=5,
        ),
        f"{agent.name}-refused": pod_for(
            agent.name,
            f"{agent.name}-refused",
            [shell("main", "true")],
            kind="slurm",
            metadata={"annotations": {"slurm.vkpy.io/flags": "--output=/tmp/elsewhere"}},
        ),
    }
    for pod in pods.values():
        await kube.create(create + "pods", pod)

    # Each pod ends as a kubelet would end it.
    ok, exit3 = f"{agent.name}-ok", f"{agent.name}-exit3"
    deadline, refused = f"{agent.name}-deadline", f"{agent.name}-refused"
    await eventually(lambda: phase(kube, ok, "Succeeded"), timeout=60, what="Succeeded")
    assert terminated(await get(kube, ok))["reason"] == "Completed"
    await eventually(lambda: phase(kube, exit3, "Failed"), timeout=60, what="Failed")
    end = terminated(await get(kube, exit3))
    assert (end["exitCode"], end["reason"]) == (3, "Error")
    await eventually(lambda: phase(kube, refused, "Failed"), timeout=60, what="refused")
    status = (await get(kube, refused))["status"]
    assert status["reason"] == "ProviderFailed" and "--output" in status["message"], status
    events = await events_for(kube, NS, refused)
    assert any(e["reason"] == "ProviderFailed" and "--output" in e["message"] for e in events)
    await eventually(lambda: phase(kube, deadline, "Failed"), timeout=60, what="deadline")
    assert (await get(kube, deadline))["status"]["reason"] == "DeadlineExceeded"

    # Files, env and hostile arguments reach the program byte for byte, running nothing.
    await eventually(lambda: phase(kube, full, "Running"), timeout=60, what="Running")
    expected = f"from-cms3cr3tfrom-init\n {full}\n{hostile}|{hostile}"
    await logs_become(testbed, full, "main", expected)
    assert not await asyncio.to_thread(Path(marker).exists)

    # kubectl logs -f follows the running container.
    follower = await asyncio.create_subprocess_exec(
        "kubectl",
        "logs",
        "-f",
        full,
        "-c",
        "ticker",
        "--tail=1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": str(testbed.cluster.admin_kubeconfig)},
    )
    try:
        ticks = [await asyncio.wait_for(follower.stdout.readline(), 30) for _ in range(3)]
    finally:
        follower.kill()
        await follower.wait()
    numbers = [int(t.split()[1]) for t in ticks]
    assert numbers == list(range(numbers[0], numbers[0] + 3)), ticks

    # kill -9 of the agent, then a restart: the same job, no second sbatch.
    jobs = submissions(agent)
    assert sorted(jobs) == sorted(n for n in pods if n != refused), jobs
    assert all(len(j) == 1 for j in jobs.values()), jobs
    before = await get(kube, full)
    agent.stop(signal.SIGKILL)
    agent.start()
    await eventually(lambda: node_ready(kube, agent.name), timeout=40, what="Ready again")
    await eventually(
        lambda: _log_has(agent, f"adopted from the backend (job {jobs[full][0]})"),
        timeout=30,
        what="adoption",
    )
    after = await get(kube, full)
    assert after["status"]["phase"] == "Running"
    ids = [c["containerID"] for c in after["status"]["containerStatuses"]]
    assert ids == [c["containerID"] for c in before["status"]["containerStatuses"]]
    assert all(i.startswith(f"slurm://{jobs[full][0]}/") for i in ids), ids
    assert submissions(agent) == jobs  # adopted: no second submission

    # Delete with a grace period: the job is stopped and Slurm confirms it is over.
    deleted = await asyncio.to_thread(
        kubectl, testbed, "delete", "pod", full, "--grace-period=3", "--wait=true", timeout=90
    )
    assert deleted.returncode == 0, deleted.stderr
    assert job_state(jobs[full][0]) not in ACTIVE
    assert await _log_has(agent, "with a grace period of 3s")


async def _log_has(agent: AgentProcess, text: str) -> bool:
    return text in agent.log.read_text(errors="replace")


# ---------------------------------------------------------------- restarts mid-run


async def test_slurmctld_and_sshd_restart_mid_run(login_user, kube, tmp_path):
    """slurmctld stops while pods run and their containers end meanwhile; then sshd (the
    listener and the agent's sessions) stops while another pod runs. Each time the node
    goes NotReady saying why and comes back; every pod ends with its own status, and no
    pod is submitted twice."""
    testbed = login_user
    fast_reconnect = {"reconnect_initial_seconds": 0.2, "reconnect_max_seconds": 1.0}
    async with slurm_agent(
        testbed,
        kube,
        tmp_path,
        "slurm-restart",
        settings={"node_status_seconds": 1},
        backend={"ssh": {**ssh_section(testbed.ssh), **fast_reconnect}},
    ) as agent:
        await _restarts(testbed, kube, agent)


async def _restarts(testbed, kube, agent):
    node = agent.name
    short = [f"{node}-{i}" for i in range(3)]  # they end while slurmctld is down
    long = f"{node}-long"  # it runs through the sshd restart
    scripts = {name: f"sleep 3; exit {i}" for i, name in enumerate(short)}
    scripts[long] = "sleep 25; exit 7"
    for name, script in scripts.items():
        pod = pod_for(node, name, [shell("main", script)], kind="slurm")
        await kube.create(f"/api/v1/namespaces/{NS}/pods", pod)
    for name in scripts:
        await eventually(lambda n=name: phase(kube, n, "Running"), timeout=60, what="Running")
    uids = [(await get(kube, name))["metadata"]["uid"] for name in short]
    supervisor = Supervisor(testbed.state)

    supervisor.stop("slurmctld")
    try:
        await eventually(lambda: _not_ready(kube, node, "slurmctld"), timeout=30, what="NotReady")
        ended = [work_dir(testbed, node) / uid / "status" / "main" for uid in uids]
        await eventually(
            lambda: asyncio.to_thread(_all_exited, ended), timeout=30, what="containers to end"
        )
    finally:
        await asyncio.to_thread(
            slurm.start_controller, supervisor, testbed.slurm.conf, slurm.SlurmPorts()
        )
    await eventually(lambda: node_ready(kube, node), timeout=30, what="Ready after slurmctld")
    for i, name in enumerate(short):
        want = "Succeeded" if i == 0 else "Failed"
        await eventually(lambda n=name, w=want: phase(kube, n, w), timeout=60, what=want)
        assert terminated(await get(kube, name))["exitCode"] == i

    port = testbed.ssh.port
    sessions = sshd.session_pids(port, sshd.client_ports(port, agent.process.pid))
    assert sessions, "no sshd session serves the agent"
    supervisor.stop("sshd")
    for pid in sessions:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        await eventually(
            lambda: _not_ready(kube, node, "login node unreachable"), timeout=30, what="NotReady"
        )
    finally:
        await asyncio.to_thread(sshd.start, supervisor, testbed.state / "ssh" / "sshd_config", port)
    await eventually(lambda: node_ready(kube, node), timeout=30, what="Ready after sshd")
    assert await phase(kube, long, "Running")
    await eventually(lambda: phase(kube, long, "Failed"), timeout=60, what="Failed")
    assert terminated(await get(kube, long))["exitCode"] == 7
    jobs = submissions(agent)
    assert sorted(jobs) == sorted(scripts) and all(len(j) == 1 for j in jobs.values()), jobs


def _all_exited(status_files: list[Path]) -> bool:
    """The job scripts recorded an exit for every container (``exit CODE ...`` lines)."""
    return all(
        f.exists() and any(line.startswith("exit ") for line in f.read_text().splitlines())
        for f in status_files
    )


async def _not_ready(kube: Kube, node: str, why: str) -> bool:
    found = await kube.get(f"/api/v1/nodes/{node}")
    ready = [c for c in found["status"]["conditions"] if c["type"] == "Ready"]
    return bool(ready) and ready[0]["status"] == "False" and why in ready[0]["message"]


# ---------------------------------------------------------------- the network cut


async def test_network_cut_to_the_login_node(login_user, kube, tmp_path):
    """The agent reaches the login node through its own network namespace, and the link
    drops for 20 s: packets vanish, nothing refuses them. The node goes NotReady saying
    the login node is unreachable; the running pod's job goes on under Slurm, and a pod
    bound during the cut waits. Once the link is back, each pod ends with its own status,
    submitted once."""
    testbed = login_user
    login = Testbed(testbed.state).login_namespace(testbed)
    quick = {
        "keepalive_seconds": 1.0,
        "keepalive_count_max": 2,
        "connect_timeout_seconds": 2.0,
        "reconnect_initial_seconds": 0.2,
        "reconnect_max_seconds": 1.0,
    }
    async with slurm_agent(
        testbed,
        kube,
        tmp_path,
        "slurm-cut",
        settings={"node_status_seconds": 1},
        backend={"ssh": {**ssh_section(login), **quick}},
    ) as agent:
        node = agent.name
        running, later = f"{node}-running", f"{node}-later"
        await kube.create(
            f"/api/v1/namespaces/{NS}/pods",
            pod_for(node, running, [shell("main", "sleep 12; exit 4")], kind="slurm"),
        )
        await eventually(lambda: phase(kube, running, "Running"), timeout=60, what="Running")
        uid = (await get(kube, running))["metadata"]["uid"]
        loginns.cut()
        try:
            await eventually(
                lambda: _not_ready(kube, node, "login node unreachable"),
                timeout=30,
                what="NotReady during the cut",
            )
            await kube.create(
                f"/api/v1/namespaces/{NS}/pods",
                pod_for(node, later, [shell("main", "exit 0")], kind="slurm"),
            )
            status = work_dir(testbed, node) / uid / "status" / "main"
            await eventually(
                lambda: asyncio.to_thread(_all_exited, [status]),
                timeout=30,
                what="the job to end during the cut",
            )
            assert await pod_phase(kube, NS, later) == "Pending"
        finally:
            loginns.mend()
        await eventually(lambda: node_ready(kube, node), timeout=30, what="Ready after the cut")
        await eventually(lambda: phase(kube, running, "Failed"), timeout=60, what="Failed")
        assert terminated(await get(kube, running))["exitCode"] == 4
        await eventually(lambda: phase(kube, later, "Succeeded"), timeout=60, what="Succeeded")
        jobs = submissions(agent)
        assert sorted(jobs) == sorted([running, later]), jobs
        assert all(len(j) == 1 for j in jobs.values()), jobs
