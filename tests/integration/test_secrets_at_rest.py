"""Where a Secret's value goes when a pod runs on the Slurm node, checked for real: never
into the agent's log at DEBUG, the process table, or the job script Slurm stores; on the
login node only in files of the login user that no other user can read (``nobody``
tries), under a pod directory of mode 0700, the agent's own staging files 0600. And a
pod of another namespace on the same node reaches none of those files."""

import asyncio
import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient

from vkpy.kube.client import Kube
from vkpy.testing.waiting import eventually

from .helpers import kubectl, pod_for, pod_phase
from .test_agent_slurm import (
    NS,
    phase,
    shell,
    slurm_agent,
    submissions,
    work_dir,
)


@pytest.fixture
async def kube(kube_api: ApiClient) -> Kube:
    return Kube(kube_api)


def _output(*argv: str) -> bytes:
    return subprocess.run(argv, capture_output=True, check=True).stdout


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           *argv], capture_output=True, text=True)  # fmt: skip


def _holding(root: Path, secret: bytes) -> list[Path]:
    """Every regular file under ``root`` whose bytes hold ``secret``."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            try:
                if path.is_file() and not path.is_symlink() and secret in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


async def test_a_secret_reaches_the_container_and_nowhere_else(login_user, kube, tmp_path):
    secret = f"vkpy-sweep-{uuid.uuid4().hex}"
    async with slurm_agent(
        login_user, kube, tmp_path, "sweep", settings={"log_level": "DEBUG"}
    ) as agent:
        name = f"{agent.name}-pod"
        await kube.create(
            f"/api/v1/namespaces/{NS}/secrets",
            {"metadata": {"name": name}, "stringData": {"t": secret}},
        )
        main = shell(
            "main",
            '[ "$(cat /sec/t)" = "$TOKEN" ] && echo same; exec sleep 300',
            env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": "t"}}}],
            volumeMounts=[{"name": "sec", "mountPath": "/sec", "readOnly": True}],
        )
        pod = pod_for(
            agent.name,
            name,
            [main],
            kind="slurm",
            volumes=[{"name": "sec", "secret": {"secretName": name}}],
        )
        await kube.create(f"/api/v1/namespaces/{NS}/pods", pod)
        await eventually(lambda: phase(kube, name, "Running"), timeout=90, what="Running")
        base = work_dir(login_user, agent.name)
        uid = (await kube.get(f"/api/v1/namespaces/{NS}/pods/{name}"))["metadata"]["uid"]
        pod_dir = base / uid
        logs = pod_dir / "logs"
        await eventually(
            lambda: asyncio.to_thread(
                lambda: any(b"same" in p.read_bytes() for p in logs.glob("main.*.log"))
            ),
            timeout=60,
            what="the container to see the secret, as a file and in its environment",
        )
        value = secret.encode()

        assert value not in agent.log.read_bytes(), "the secret is in the agent's log"
        table = await asyncio.to_thread(_output, "ps", "-eww", "-o", "args=")
        assert value not in table, "the secret is on a command line"
        (job,) = submissions(agent)[name]
        script = await asyncio.to_thread(_output, "scontrol", "write", "batch_script", job, "-")
        assert script.startswith(b"#!") and value not in script, "the secret is in Slurm's copy"

        assert stat.S_IMODE(pod_dir.stat().st_mode) == 0o700
        holders = await asyncio.to_thread(_holding, pod_dir, value)
        staged = [p for p in holders if pod_dir / "volumes" not in p.parents]
        assert staged and len(staged) < len(holders), f"the secret's copies are not {holders}"
        owner = pod_dir.stat().st_uid
        for path in holders:
            mode = path.stat()
            assert mode.st_uid == owner, path
            if pod_dir / "volumes" not in path.parents:
                # vkpy's own staging (the environment files) is private; a volume's
                # files keep the modes the pod asked for (defaultMode 0644, as on a
                # kubelet), and the 0700 pod directory keeps other users out.
                assert stat.S_IMODE(mode.st_mode) & 0o077 == 0, path
            refused = await asyncio.to_thread(_as_nobody, "cat", str(path))
            assert refused.returncode != 0 and value not in refused.stdout.encode(), path
        assert (await asyncio.to_thread(_as_nobody, "ls", str(pod_dir))).returncode != 0

        await kube.delete(f"/api/v1/namespaces/{NS}/pods/{name}")


async def test_a_pod_cannot_reach_another_namespaces_pod_files(login_user, kube, tmp_path):
    """Two pods of two namespaces on one node: the second searches its whole filesystem
    for the first one's Secret and emptyDir files, and reads its work directory by
    path; it finds nothing (each container mounts its own pod's volumes only)."""
    mark = uuid.uuid4().hex[:10]
    other = f"sweep-b-{mark}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": other}})
    try:
        async with slurm_agent(login_user, kube, tmp_path, "isolate") as agent:
            await kube.create(
                f"/api/v1/namespaces/{other}/secrets",
                {"metadata": {"name": "s"}, "stringData": {f"key-{mark}": "x"}},
            )
            owner = shell(
                "main",
                f"echo x > /w/file-{mark}; exec sleep 300",
                volumeMounts=[
                    {"name": "sec", "mountPath": "/sec", "readOnly": True},
                    {"name": "w", "mountPath": "/w"},
                ],
            )
            victim = pod_for(
                agent.name,
                "victim",
                [owner],
                kind="slurm",
                metadata={"namespace": other},
                volumes=[
                    {"name": "sec", "secret": {"secretName": "s"}},
                    {"name": "w", "emptyDir": {}},
                ],
            )
            await kube.create(f"/api/v1/namespaces/{other}/pods", victim)
            await eventually(
                lambda: _phase_in(kube, other, "victim", "Running"), timeout=90, what="Running"
            )
            uid = (await kube.get(f"/api/v1/namespaces/{other}/pods/victim"))["metadata"]["uid"]
            victim_dir = work_dir(login_user, agent.name) / uid
            await eventually(
                lambda: asyncio.to_thread((victim_dir / "volumes").exists),
                timeout=30,
                what="the victim's volumes",
            )
            search = (
                f"touch /tmp/file-{mark}; "  # the control: the search finds this one
                "find / \\( -path /proc -o -path /sys \\) -prune -o "
                f"\\( -name 'key-{mark}' -o -name 'file-{mark}' \\) -print 2>/dev/null; "
                f"ls {victim_dir} 2>&1 | head -1; echo searched"
            )
            name = f"{agent.name}-seeker"
            seeker = pod_for(agent.name, name, [shell("main", search)], kind="slurm")
            await kube.create(f"/api/v1/namespaces/{NS}/pods", seeker)
            await eventually(lambda: phase(kube, name, "Succeeded"), timeout=90, what="done")
            done = await asyncio.to_thread(kubectl, login_user, "logs", name)
            lines = done.stdout.splitlines()
            assert lines[-1:] == ["searched"], done
            assert lines[0] == f"/tmp/file-{mark}", lines  # its own file, nothing of the other
            assert len(lines) == 3 and "No such file" in lines[1], lines
    finally:
        await kube.delete(f"/api/v1/namespaces/{other}")


async def _phase_in(kube: Kube, namespace: str, name: str, *phases: str) -> bool:
    return await pod_phase(kube, namespace, name) in phases
