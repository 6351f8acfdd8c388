"""The testbed's parts are real: scheduler, Podman, Slurm behind sshd, and env.sh."""

import os
import subprocess
import uuid

import aiohttp
from kubernetes_asyncio.client import CoreV1Api

from vkpy.testing.waiting import eventually

TAINT = {"key": "virtual-kubelet.io/provider", "value": "selftest", "effect": "NoSchedule"}


def _node(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"type": "virtual-kubelet", "selftest": name}},
        "spec": {"taints": [TAINT]},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "10"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "10"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "SelfTest",
                    "message": "created by the testbed self-test",
                }
            ],
        },
    }


def _pod(name: str, node: str, *, tolerate: bool) -> dict:
    spec = {
        "nodeSelector": {"selftest": node},
        "containers": [{"name": "c", "image": "localhost/busybox:latest"}],
    }
    if tolerate:
        spec["tolerations"] = [{"key": TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def test_real_scheduler_binds_only_the_tolerating_pod(kube_api):
    core = CoreV1Api(kube_api)
    node = f"selftest-{uuid.uuid4().hex[:6]}"
    await core.create_node(_node(node))
    names = {"tolerating": f"{node}-yes", "untolerating": f"{node}-no"}
    try:
        for kind, name in names.items():
            await core.create_namespaced_pod(
                "default", _pod(name, node, tolerate=kind == "tolerating")
            )
        bound = await eventually(
            lambda: core.read_namespaced_pod(names["tolerating"], "default"),
            what="the tolerating pod bound",
            timeout=10,
            interval=0.1,
            until=lambda pod: bool(pod.spec.node_name),
        )
        assert bound.spec.node_name == node
        pending = await core.read_namespaced_pod(names["untolerating"], "default")
        assert pending.spec.node_name is None
        assert pending.status.phase == "Pending"
        scheduled = {c.type: c for c in pending.status.conditions or []}["PodScheduled"]
        assert scheduled.status == "False"
        assert scheduled.reason == "Unschedulable"
        assert "untolerated taint" in scheduled.message
    finally:
        for name in names.values():
            await core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        await core.delete_node(node)


def test_podman_runs_the_local_image(testbed):
    env = {**os.environ, "CONTAINERS_CONF": str(testbed.podman.containers_conf)}
    out = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network=none",
            testbed.podman.image,
            "sh",
            "-c",
            "echo $((6*7))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "42\n"


async def test_podman_rest_api_answers_on_its_socket(testbed):
    connector = aiohttp.UnixConnector(path=str(testbed.podman.socket))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://d/v4.0.0/libpod/images/json") as response,
    ):
        assert response.status == 200
        images = await response.json()
    assert any(testbed.podman.image in (i.get("Names") or []) for i in images)


async def test_sbatch_over_ssh_as_the_login_user_completes(login_node):
    who = await login_node.run("id -un", check=True)
    assert who.stdout.strip() == "vkpyuser"
    submitted = await login_node.run(
        "sbatch --parsable --wrap 'echo ran on $(hostname) as $(id -un)'", check=True
    )
    job = submitted.stdout.strip().split(";")[0]

    async def state() -> str:
        result = await login_node.run(f"sacct -c -j {job} -n -P -o state,exitcode", check=True)
        return str(result.stdout.strip())

    done = await eventually(
        state,
        what=f"job {job} to complete",
        timeout=20,
        interval=0.2,
        until=lambda s: s.startswith("COMPLETED"),
    )
    assert done == "COMPLETED|0:0"
    output = await login_node.run(f"cat slurm-{job}.out", check=True)
    assert output.stdout.strip().endswith("as vkpyuser")


def test_env_sh_points_the_command_line_tools_at_the_testbed(testbed):
    script = (
        f". {testbed.state / 'env.sh'} && kubectl get ns default -o name && sinfo -h -o %P"
        " && podman image exists localhost/busybox:latest && echo ok"
    )
    clean_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "SLURM_CONF", "CONTAINERS_CONF")
    }
    out = subprocess.run(["bash", "-c", script], env=clean_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["namespace/default", "debug*", "ok"]


def test_testbed_writes_a_valid_podman_agent_config(testbed):
    from vkpy.config import load

    settings = load(testbed.state / "podman.yaml")
    assert settings.backend.kind == "podman"
    assert settings.backend.socket == str(testbed.podman.socket)
    assert settings.kubelet_api.serving_certificate == "csr"
