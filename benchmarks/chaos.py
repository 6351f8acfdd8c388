"""`make chaos`: pods keep arriving on a Podman, a Slurm and an HTCondor (stand-in) node
while faults keep coming; invariants are checked at the end and printed as a table.

CHAOS_MINUTES (10) of load, CHAOS_SEED (random) for the pod mix and the faults,
CHAOS_FAULTS (all) to draw only some kinds (comma-separated). Each
pod's container first appends "<pod uid> <attempt> <uptime>" to a start-record file on
its backend's host (a hostPath volume), so a pod that ran twice shows, and the status lag
(container start → Running in the API) is measured on one clock. The faults are in
benchmarks/chaos_faults.py. The Slurm agent reaches its login node through the node's
own network namespace, whose link a fault drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from chaos_faults import (  # benchmarks/chaos_faults.py
    AgentProcess,
    Fault,
    SshDaemon,
    fault_kinds,
    injectors,
)
from common import node_ready  # benchmarks/common.py

from vkpy.errors import KubeApiError
from vkpy.kube.client import Kube, connect
from vkpy.kube.watching import Change, Snapshot, watch_forever
from vkpy.testing import loginns, sshd
from vkpy.testing.processes import Supervisor
from vkpy.testing.rootless import prepare_login_user
from vkpy.testing.sshd import Ssh
from vkpy.testing.testbed import Endpoints, Testbed

MINUTES = float(os.environ.get("CHAOS_MINUTES", "10"))
ONLY = [kind for kind in os.environ.get("CHAOS_FAULTS", "").split(",") if kind]
SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
NAMESPACE = "default"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
BACKENDS = ("podman", "slurm", "htcondor")
KINDS = {  # kind: share of the mix
    "short": 5,
    "long": 2,
    "fail": 2,
    "restart": 2,
    "deadline": 1,
    "delete-pending": 1,
    "delete-running": 1,
    "delete-finished": 1,
}
RECORD = (  # /proc/uptime is the host's boot-time clock, inside a container too
    "read up _ < /proc/uptime; "
    'n=$(grep -c "^$POD_UID " /records/starts 2>/dev/null); n=$((${n:-0} + 1)); '
    'echo "$POD_UID $n $up" >> /records/starts; '
)
SETTLE_SECONDS = 240  # after the load: for every pod to end, or go


@dataclass
class Planned:
    name: str
    backend: str
    kind: str
    created: float = 0.0
    uid: str = ""
    deleted_at: float = 0.0
    gone_at: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)


def pod_body(plan: Planned, node: str, rng: random.Random) -> dict[str, Any]:
    bodies = {
        "short": f"sleep {rng.randint(1, 5)}",
        "long": f"sleep {rng.randint(20, 40)}",
        "fail": "sleep 1; exit 3",
        "restart": 'sleep 1; [ "$n" -ge 2 ] || exit 3',
        "deadline": "sleep 300",
        "delete-pending": "sleep 300",
        "delete-running": "sleep 300",
        "delete-finished": "sleep 1",
    }
    spec: dict[str, Any] = {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
        "restartPolicy": "OnFailure" if plan.kind == "restart" else "Never",
        "terminationGracePeriodSeconds": 2,
        "volumes": [{"name": "records", "hostPath": {"path": records_dir_of(node)}}],
        "containers": [
            {
                "name": "main",
                "image": "localhost/busybox:latest",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", RECORD + bodies[plan.kind]],
                "env": [
                    {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}
                ],
                "volumeMounts": [{"name": "records", "mountPath": "/records"}],
            }
        ],
    }
    if plan.kind == "deadline":
        spec["activeDeadlineSeconds"] = 8
    labels = {"chaos": RUN, "chaos-kind": plan.kind}
    return {"metadata": {"name": plan.name, "labels": labels}, "spec": spec}


RUN = f"chaos-{uuid.uuid4().hex[:5]}"
RECORDS: dict[str, Path] = {}


def records_dir_of(node: str) -> str:
    return str(RECORDS[node])


def agent_for(
    endpoints: Endpoints, work: Path, backend: str, login: Ssh
) -> tuple[str, AgentProcess, Path]:
    """The testbed's own config for ``backend``, as a node of this run with its state and
    start records in ``work``; Slurm's login node is reached through ``login``."""
    node = f"{RUN}-{backend}"
    config = yaml.safe_load((endpoints.state / f"{backend}.yaml").read_text())
    state = work / f"state-{backend}"
    state.mkdir(parents=True, exist_ok=True)
    config.update({"state_dir": str(state), "log_level": "INFO"})
    config["kubelet_api"].update({"port": 0, "health_port": 0})
    if backend == "slurm":
        config["backend"]["ssh"].update(host=login.host, known_hosts=str(login.known_hosts))
    if backend == "podman":
        records = work / "records-podman"
        records.mkdir(exist_ok=True)
    else:  # the jobs run as the login user, on its shared home
        user = pwd.getpwnam(endpoints.ssh.user)
        records = Path(user.pw_dir) / "chaos" / RUN
        records.mkdir(parents=True, exist_ok=True)
        for directory in (records.parent, records):
            os.chown(directory, user.pw_uid, user.pw_gid)
        records = records / backend
        records.mkdir(exist_ok=True)
        os.chown(records, user.pw_uid, user.pw_gid)
    config["backend"]["allowed_host_paths"] = [str(records)]
    RECORDS[node] = records
    file = work / f"{backend}.yaml"
    file.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "vkpy.cli", "run", "--config", str(file), "--node-name", node]
    return node, AgentProcess(node, argv, work / f"{backend}.log"), state


class Driver:
    def __init__(self, kube: Kube, nodes: dict[str, str], agents: list[AgentProcess]) -> None:
        self.kube = kube
        self.nodes = nodes  # backend -> node
        self.agents = agents
        # Reproducible, not secret: the load, each pod and the faults draw from their own
        # generators, so one seed gives the same mix and faults whatever the timing.
        self.rng = random.Random(f"{SEED}:load")  # noqa: S311
        self.fault_rng = random.Random(f"{SEED}:faults")  # noqa: S311
        self.plans: dict[str, Planned] = {}
        self.faults: list[Fault] = []
        self.running_seen: dict[str, float] = {}
        self.running_boottime: dict[str, float] = {}  # on the start records' clock
        self.tasks: set[asyncio.Task[None]] = set()
        self.lags: list[tuple[float, float]] = []  # (when Running was seen, created → Running)

    async def watch(self) -> None:
        """Every pod of the run as it changes, listing again whenever the watch ends."""
        await watch_forever(self.kube, PODS, {"labelSelector": f"chaos={RUN}"}, self.changed)

    async def changed(self, change: Change) -> None:
        if isinstance(change, Snapshot):
            for item in change.items:
                self.seen(item)
            listed = {item["metadata"]["name"] for item in change.items}
            for plan in self.plans.values():  # deleted while the watch was down
                if plan.deleted_at and not plan.gone_at and plan.name not in listed:
                    plan.gone_at = time.monotonic()
        elif change.type == "DELETED":
            plan = self.plans.get(change.object["metadata"]["name"])
            if plan is not None and not plan.gone_at:
                plan.gone_at = time.monotonic()
        else:
            self.seen(change.object)

    def seen(self, item: dict[str, Any]) -> None:
        plan = self.plans.get(item["metadata"]["name"])
        if plan is None:
            return
        plan.last = item
        if (item.get("status") or {}).get(
            "phase"
        ) == "Running" and plan.name not in self.running_seen:
            now = time.monotonic()
            self.running_seen[plan.name] = now
            self.running_boottime[plan.name] = time.clock_gettime(time.CLOCK_BOOTTIME)
            self.lags.append((now, now - plan.created))

    async def load(self, until: float) -> None:
        kinds, weights = zip(*KINDS.items(), strict=True)
        index = 0
        while time.monotonic() < until:
            backend = BACKENDS[index % len(BACKENDS)]
            kind = self.rng.choices(kinds, weights)[0]
            plan = Planned(f"{RUN}-{index:04d}", backend, kind)
            self.plans[plan.name] = plan
            own = random.Random(f"{SEED}:{plan.name}")  # noqa: S311
            body = pod_body(plan, self.nodes[backend], own)
            self.tasks.add(task := asyncio.create_task(self.run_pod(plan, body, own)))
            task.add_done_callback(self.tasks.discard)
            index += 1
            await asyncio.sleep(self.rng.uniform(0.5, 1.3))

    async def run_pod(self, plan: Planned, body: dict[str, Any], rng: random.Random) -> None:
        for _ in range(60):  # the apiserver may be restarting
            plan.created = time.monotonic()
            try:
                plan.uid = (await self.kube.create(PODS, body))["metadata"]["uid"]
                break
            except Exception:
                await asyncio.sleep(2)
        else:
            return
        if plan.kind == "delete-pending":
            await asyncio.sleep(rng.uniform(0, 1))
        elif plan.kind == "delete-running":
            await self.until(lambda: plan.name in self.running_seen, 180)
            await asyncio.sleep(rng.uniform(0, 5))
        elif plan.kind == "delete-finished":
            await self.until(lambda: phase_of(plan) in ("Succeeded", "Failed"), 240)
        else:
            return
        for _ in range(60):
            try:
                await self.kube.delete(f"{PODS}/{plan.name}")
                plan.deleted_at = time.monotonic()
                return
            except KubeApiError as exc:
                if exc.status == 404:
                    plan.deleted_at = plan.gone_at = time.monotonic()
                    return
            except Exception as exc:  # the apiserver may be restarting
                print(f"chaos: delete of {plan.name}: {exc}")
            await asyncio.sleep(2)

    @staticmethod
    async def until(check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)

    async def all_ready(self) -> bool:
        try:
            return all([await node_ready(self.kube, node) for node in self.nodes.values()])
        except Exception:
            return False

    async def inject(self, until: float, endpoints: Endpoints, state_dirs: list[Path]) -> None:
        supervisor, keys, port = (
            Supervisor(endpoints.state),
            endpoints.state / "ssh",
            endpoints.ssh.port,
        )
        sshds = [
            SshDaemon("sshd", lambda: sshd.start(supervisor, keys / "sshd_config", port)),
            SshDaemon(
                loginns.DAEMON,
                lambda: loginns.start(supervisor, keys / "netns-sshd_config", port),
            ),
        ]
        kinds = injectors(supervisor, self.agents, state_dirs, sshds)
        names = sorted(set(kinds) & set(ONLY)) if ONLY else sorted(kinds)
        await asyncio.sleep(self.fault_rng.uniform(10, 40))
        while time.monotonic() < until:
            kind = self.fault_rng.choice(names)
            fault = Fault(kind, "", time.monotonic())
            self.faults.append(fault)
            stamp = time.strftime("%H:%M:%S")
            try:
                fault.target = await kinds[kind](self.fault_rng)
            except Exception as exc:  # a fault that could not be injected is reported
                fault.target = f"not injected: {exc}"
            fault.ended = time.monotonic()
            took = fault.ended - fault.began
            print(f"chaos: {stamp} {kind} {fault.target} ({took:.0f} s)", flush=True)
            deadline = time.monotonic() + 300
            while not await self.all_ready() and time.monotonic() < deadline:
                await asyncio.sleep(1)
            fault.recovered = time.monotonic()
            await asyncio.sleep(self.fault_rng.uniform(10, 40))


def phase_of(plan: Planned) -> str:
    return str((plan.last.get("status") or {}).get("phase") or "")


def terminated(plan: Planned) -> dict[str, Any]:
    for status in (plan.last.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "terminated" in state:
            return {**state["terminated"], "restartCount": status.get("restartCount", 0)}
    return {}


@dataclass
class Starts:
    attempts: dict[str, list[int]]  # pod uid: its attempts, in the order they were written
    first: dict[str, float]  # pod uid: boot-time clock at its first start


def starts(records: list[Path]) -> Starts:
    found = Starts(defaultdict(list), {})
    for file in records:
        with contextlib.suppress(OSError):
            for line in file.read_text().splitlines():
                uid, attempt, uptime, *_ = [*line.split(" "), "", ""]
                if attempt.isdecimal():
                    found.attempts[uid].append(int(attempt))
                    with contextlib.suppress(ValueError):
                        found.first.setdefault(uid, float(uptime))
    return found


def violations(driver: Driver, records: dict[str, list[int]]) -> list[str]:
    found: list[str] = []
    for plan in driver.plans.values():
        if not plan.uid:
            continue
        attempts = records.get(plan.uid, [])
        if sorted(attempts) != list(range(1, len(attempts) + 1)):
            found.append(f"{plan.name} ({plan.kind}): attempts {attempts}: it ran twice")
        if plan.kind.startswith("delete-"):
            if not plan.gone_at:
                found.append(f"{plan.name} ({plan.kind}): still in the API")
            elif plan.gone_at - acting_from(driver, plan) > 2 + 60:
                took = plan.gone_at - plan.deleted_at
                found.append(f"{plan.name}: gone {took:.0f} s after its delete")
            if len(attempts) > 1:
                found.append(f"{plan.name} ({plan.kind}): started {len(attempts)} times")
            continue
        found += expectation(plan, attempts)
    return found


def acting_from(driver: Driver, plan: Planned) -> float:
    """When the pod's agent could act on its deletion: a stopped (SIGSTOP) agent cannot,
    so a deletion during the stop counts from the SIGCONT."""
    node = driver.nodes[plan.backend]
    start = plan.deleted_at
    for fault in driver.faults:
        stopped = fault.kind == "agent-sigstop-60s" and fault.target == node
        if stopped and fault.began <= start <= fault.ended:
            start = fault.ended
    return start


def expectation(plan: Planned, attempts: list[int]) -> list[str]:
    phase, ended = phase_of(plan), terminated(plan)
    want = {
        "short": ("Succeeded", 0, 0),
        "long": ("Succeeded", 0, 0),
        "fail": ("Failed", 3, 0),
        "restart": ("Succeeded", 0, 1),
        "deadline": ("Failed", None, 0),
    }[plan.kind]
    problems = []
    if phase != want[0]:
        reason = (plan.last.get("status") or {}).get("reason", "")
        problems.append(
            f"{plan.name} ({plan.kind}): phase {phase or 'none'} {reason}, want {want[0]}"
        )
    elif plan.kind == "deadline":
        if (plan.last.get("status") or {}).get("reason") != "DeadlineExceeded":
            problems.append(f"{plan.name} (deadline): reason {plan.last['status'].get('reason')}")
    elif ended.get("exitCode") != want[1] or ended.get("restartCount") != want[2]:
        problems.append(
            f"{plan.name} ({plan.kind}): exit {ended.get('exitCode')} after "
            f"{ended.get('restartCount')} restarts, want {want[1]} after {want[2]}"
        )
    if plan.kind == "deadline" and len(attempts) > 1:
        problems.append(f"{plan.name} (deadline): started {len(attempts)} times")
    if phase == want[0] and plan.kind != "deadline" and len(attempts) != want[2] + 1:
        problems.append(
            f"{plan.name} ({plan.kind}): {len(attempts)} starts for restartCount {want[2]}"
        )
    return problems


def on_login_node(endpoints: Endpoints, command: str) -> str:
    """``command``'s output, run as the login user over the testbed's sshd (its PATH
    holds the HTCondor stand-in)."""
    ssh = endpoints.ssh
    argv = [
        "ssh",
        "-i",
        str(ssh.client_key),
        "-p",
        str(ssh.port),
        "-o",
        f"UserKnownHostsFile={ssh.known_hosts}",
        "-o",
        "BatchMode=yes",
        f"{ssh.user}@{ssh.host}",
        command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout


def leftovers(endpoints: Endpoints, driver: Driver) -> list[str]:
    """Anything of the run's pods still in a backend after the clean-up."""
    uids = {plan.uid for plan in driver.plans.values() if plan.uid}
    short = {uid[:8] for uid in uids}
    found = []
    queue = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True)
    found += [f"squeue: {name}" for name in queue.stdout.split() if name.split("_")[-1] in uids]
    for uid in on_login_node(endpoints, "condor_q -af VkpyPodUID").split():
        if uid.strip('"') in uids:
            found.append(f"condor_q: {uid}")
    names = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    ).stdout.split()
    names += on_login_node(endpoints, "podman ps -a --format '{{.Names}}'").split()
    found += [
        f"container: {name}" for name in names if RUN in name or any(u in name for u in short)
    ]
    return found


async def drained(endpoints: Endpoints, driver: Driver, timeout: float = 180) -> list[str]:
    """What the backends still hold of the run once they had ``timeout`` to remove it
    (the API pods go first; Podman then removes each pod's containers)."""
    deadline = time.monotonic() + timeout
    while found := await asyncio.to_thread(leftovers, endpoints, driver):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(5)
    return found


async def clean_up(driver: Driver) -> None:
    with contextlib.suppress(Exception):
        await driver.kube.request("DELETE", PODS, query={"labelSelector": f"chaos={RUN}"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if not (await driver.kube.get(PODS, labelSelector=f"chaos={RUN}"))["items"]:
                return
        await asyncio.sleep(2)


async def chaos(endpoints: Endpoints, work: Path, login: Ssh) -> int:
    prepare_login_user(endpoints.ssh.user)
    made = [agent_for(endpoints, work, backend, login) for backend in BACKENDS]
    nodes = {backend: node for backend, (node, _, _) in zip(BACKENDS, made, strict=True)}
    agents = [agent for _, agent, _ in made]
    for agent in agents:
        agent.start()
    kube = Kube(await connect(None))
    driver = Driver(kube, nodes, agents)
    watcher = asyncio.create_task(driver.watch())
    try:
        deadline = time.monotonic() + 120
        while not await driver.all_ready():
            if time.monotonic() > deadline:
                raise SystemExit("chaos: the nodes never became Ready")
            await asyncio.sleep(1)
        print(f"chaos: run {RUN}, seed {SEED}, {MINUTES:g} minutes", flush=True)
        end = time.monotonic() + MINUTES * 60
        warm = asyncio.create_task(warm_up(agents))
        await asyncio.gather(
            driver.load(end),
            driver.inject(end, endpoints, [state for _, _, state in made]),
        )
        warm.cancel()
        settle = time.monotonic() + SETTLE_SECONDS
        await driver.until(lambda: settled(driver) or time.monotonic() > settle, SETTLE_SECONDS)
        rss_end = {agent.name: agent.rss_mib() for agent in agents}
        records = starts([RECORDS[node] / "starts" for node in nodes.values()])
        found = violations(driver, records.attempts)
        found += rss_growth(agents, rss_end)
        await clean_up(driver)
        found += await drained(endpoints, driver)
        report(driver, found, rss_end, records)
        return 1 if found else 0
    finally:
        watcher.cancel()
        for agent in agents:
            agent.stop()
        for node in nodes.values():
            with contextlib.suppress(Exception):
                await kube.request("DELETE", f"/api/v1/nodes/{node}")
        await kube.close()


async def warm_up(agents: list[AgentProcess]) -> None:
    """Each agent's RSS one minute after it (re)started, by PID."""
    while True:
        for agent in agents:
            if time.monotonic() - agent.started_at > 60 and agent.pid not in agent.rss_after_warmup:
                agent.rss_after_warmup[agent.pid] = agent.rss_mib()
        await asyncio.sleep(5)


def rss_growth(agents: list[AgentProcess], rss_end: dict[str, float]) -> list[str]:
    problems = []
    for agent in agents:
        warm = agent.rss_after_warmup.get(agent.pid)
        if warm and rss_end[agent.name] > 1.2 * warm:
            problems.append(f"{agent.name}: RSS {warm:.0f} → {rss_end[agent.name]:.0f} MiB")
    return problems


def settled(driver: Driver) -> bool:
    for plan in driver.plans.values():
        if plan.kind.startswith("delete-"):
            if plan.uid and not plan.gone_at:
                return False
        elif phase_of(plan) not in ("Succeeded", "Failed"):
            return False
    return True


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else float("nan")


def status_lags(driver: Driver, records: Starts, windows: list[tuple[float, float]]) -> list[float]:
    """Container start → Running seen in the API, for pods that started outside faults."""
    lags = []
    for plan in driver.plans.values():
        seen, started = driver.running_boottime.get(plan.name), records.first.get(plan.uid)
        at = driver.running_seen.get(plan.name, 0.0)
        if seen is None or started is None or any(a <= at <= b for a, b in windows):
            continue
        lags.append(seen - started)
    return lags


def report(driver: Driver, found: list[str], rss_end: dict[str, float], records: Starts) -> None:
    kinds = Counter(plan.kind for plan in driver.plans.values())
    faults = Counter(fault.kind for fault in driver.faults)
    worst: dict[str, float] = {}
    for fault in driver.faults:
        worst[fault.kind] = max(worst.get(fault.kind, 0), fault.recovered - fault.ended)
    windows = [(f.began, f.recovered + 10) for f in driver.faults]
    calm = [lag for at, lag in driver.lags if not any(a <= at <= b for a, b in windows)]
    lags = status_lags(driver, records, windows)
    print("\n| pods by kind | count |\n| --- | --- |")
    for kind, count in sorted(kinds.items()):
        print(f"| {kind} | {count} |")
    print("\n| fault | times | worst time to all nodes Ready |\n| --- | --- | --- |")
    for kind, count in sorted(faults.items()):
        print(f"| {kind} | {count} | {worst[kind]:.1f} s |")
    print(f"\nstatus lag p99 outside fault windows: {p99(lags):.2f} s ({len(lags)} pods)")
    print(f"apply → Running p99 outside fault windows: {p99(calm):.1f} s ({len(calm)} pods)")
    print("agent RSS at the end (MiB): " + json.dumps({k: round(v) for k, v in rss_end.items()}))
    for problem in found:
        print(f"violation: {problem}")
    print(f"chaos: {len(driver.plans)} pods, {len(driver.faults)} faults, {len(found)} violations")


def main() -> None:
    if shutil.which("squeue") is None:
        raise SystemExit("chaos: the testbed's Slurm is needed (make system-deps)")
    if unknown := sorted(set(ONLY) - set(fault_kinds())):
        raise SystemExit(
            f"chaos: CHAOS_FAULTS names unknown kinds {', '.join(unknown)}; "
            f"the kinds are {', '.join(fault_kinds())}"
        )
    testbed = Testbed()
    endpoints = testbed.up()
    os.environ.update(endpoints.environment())
    work = endpoints.state / RUN
    work.mkdir(parents=True)
    login = testbed.login_namespace(endpoints)
    sys.exit(asyncio.run(chaos(endpoints, work, login)))


if __name__ == "__main__":
    main()
