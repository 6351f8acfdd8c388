"""exec, attach and port-forward on the job backends: the pure commands and decisions
(`vkpy.backends.batch.reach`, `slurm.srun`, `htcondor.sshtojob`), and the session
killer run for real on this machine."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid

import pytest

from vkpy.backend import Container, PodSpec
from vkpy.backends.batch import reach, script
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.reach import Placement, Probe, Target
from vkpy.backends.batch.records import PodMeta
from vkpy.backends.batch.runtime import RuntimeOptions
from vkpy.backends.htcondor import sshtojob
from vkpy.backends.slurm import srun
from vkpy.errors import (
    ContainerNotRunning,
    PodNotFound,
    StreamingUnsupported,
    UnsupportedPodFeature,
)
from vkpy.transport import command_line

UID = "0b7d1c52-6c1e-4d8e-9a55-2f2d1f1e0a01"
PODMAN = RuntimeOptions(kind="podman", executable="podman")
HOSTILE = ("sh", "-c", "echo $(id) `id` ; rm -rf ~ & 'q' \"d\" \\ %s\n\u00e9", "--", "-x")
META = PodMeta("ns", "web", (), ("main", "side")).to_json()
TARGET = Target(UID, "main", "42", "node-1", 0, True)


def test_exec_argv_passes_the_command_as_argv_with_the_session_mark() -> None:
    argv = reach.exec_argv(PODMAN, UID, "main", HOSTILE, stdin=True, tty=False, tag="ab12")
    name = f"vkpy-{UID}-main"
    assert argv[:3] == ["env", "VKPY_SESSION=ab12", "sh"]
    assert argv[6:] == [
        "podman",
        name,
        "podman",
        "exec",
        "--interactive",
        "--env=VKPY_SESSION=ab12",
        name,
        *HOSTILE,
    ]
    later = reach.exec_argv(
        PODMAN, UID, "main", ("ls",), stdin=False, tty=False, tag="t", fresh=False
    )
    assert later == ["env", "VKPY_SESSION=t", "podman", "exec", "--env=VKPY_SESSION=t", name, "ls"]
    with_tty = reach.exec_argv(PODMAN, UID, "main", ("sh",), stdin=False, tty=True, tag="t")
    assert "--tty" in with_tty and "--interactive" not in with_tty


def test_srun_runs_the_exact_argv_after_one_shell_on_the_login_node() -> None:
    inner = reach.exec_argv(PODMAN, UID, "main", HOSTILE, stdin=True, tty=True, tag="ab")
    argv = srun.srun_argv(TARGET, inner, tty=True)
    assert argv[:9] == [
        "srun",
        "--jobid=42",
        "--overlap",
        "--quiet",
        "--quiet",
        "--nodes=1",
        "--ntasks=1",
        "--nodelist=node-1",
        "--pty",
    ]
    assert shlex.split(command_line(argv)) == argv  # what sshd's shell hands srun


def test_condor_ssh_to_job_gets_the_command_quoted_for_the_second_shell() -> None:
    inner = reach.exec_argv(PODMAN, UID, "main", HOSTILE, stdin=True, tty=False, tag="ab")
    argv = sshtojob.ssh_to_job_argv(TARGET, inner, tty=False)
    assert argv[:2] == ["condor_ssh_to_job", "42"]
    # The login node's shell, then ssh joining words for the execute node's shell.
    login = shlex.split(command_line(argv))
    assert shlex.split(" ".join(login[2:])) == inner
    assert sshtojob.ssh_to_job_argv(TARGET, inner, tty=True)[1:3] == ["-ssh", "ssh -t"]


def test_runtimes_without_exec_or_attach_say_why() -> None:
    apptainer = RuntimeOptions(kind="apptainer", executable="apptainer")
    with pytest.raises(StreamingUnsupported, match="apptainer runtime"):
        reach.exec_argv(apptainer, UID, "main", ("ls",), stdin=False, tty=False, tag="t")
    with pytest.raises(StreamingUnsupported, match="log file"):
        reach.attach_argv(apptainer, UID, "main", tag="t")
    attach = reach.attach_argv(PODMAN, UID, "main", tag="t")
    assert attach[-3:] == ["--no-stdin", "--sig-proxy=false", f"vkpy-{UID}-main"]


@pytest.mark.parametrize("uid", ["../x", "a;b", "A" * 70, "$(id)"])
def test_hostile_names_are_no_pod(uid: str) -> None:
    with pytest.raises(PodNotFound):
        reach.check_names(uid, "main")
    with pytest.raises(PodNotFound):
        reach.check_names(UID, "x;rm")


def test_the_probe_quotes_nothing_of_the_pod_into_its_script() -> None:
    argv = reach.probe_argv("/w/n/" + UID, "main", srun.WHERE)
    assert argv[-2:] == ("/w/n/" + UID, "main")
    assert UID not in argv[2]


def probe(run: str, job: str = "42") -> Probe:
    text = f"@meta\n{META}\n@run\n{run}\n@jobid {job}\n@queue\nRUNNING|node-1|None\n"
    return reach.parse_probe(text)


def test_a_running_container_is_a_target() -> None:
    parsed = probe("start 1700000000 2")
    assert parsed.queue == "RUNNING|node-1|None"
    place = srun.placement(parsed.queue, parsed.job_id)
    found = reach.target(parsed, place, uid=UID, container="main", system="Slurm")
    assert found == Target(UID, "main", "42", "node-1", 2, True, 1700000000)


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("", "has not started"),
        ("exit 3 1700000001 0", "exited with code 3"),
        ("wait 1700000009", "waits to be restarted"),
    ],
)
def test_a_container_not_running_says_so(run: str, message: str) -> None:
    with pytest.raises(ContainerNotRunning, match=message):
        reach.target(probe(run), Placement(True, "n"), uid=UID, container="main", system="Slurm")


def test_unknown_pods_and_containers_are_not_found() -> None:
    with pytest.raises(PodNotFound, match="has no container other"):
        reach.target(
            probe("start 1 0"), Placement(True, "n"), uid=UID, container="other", system="S"
        )
    empty = reach.parse_probe("@meta\n@run\n@jobid \n@queue\n")
    with pytest.raises(PodNotFound):
        reach.target(empty, Placement(True, "n"), uid=UID, container="main", system="S")


@pytest.mark.parametrize(
    ("answer", "running", "why"),
    [
        ("PENDING|n/a|Resources", False, "Slurm job 42 is queued (PENDING: Resources)"),
        ("RUNNING|node-1|None", True, ""),
        ("COMPLETED|node-1|None", False, "has ended (COMPLETED)"),
        ("slurm_load_jobs error: Invalid job id specified", False, "left the queue"),
    ],
)
def test_slurm_placement(answer: str, running: bool, why: str) -> None:
    place = srun.placement(answer, "42")
    assert place.running is running
    assert why in place.why
    if running:
        assert place.host == "node-1"


@pytest.mark.parametrize(
    ("answer", "running", "why"),
    [
        ('[{"JobStatus": 2, "RemoteHost": "slot1@exec-3.example.org"}]', True, ""),
        ('[{"JobStatus": 1}]', False, "idle"),
        ('[{"JobStatus": 5, "HoldReason": "disk full"}]', False, "held: disk full"),
        ("", False, "left the queue"),
    ],
)
def test_htcondor_placement(answer: str, running: bool, why: str) -> None:
    place = sshtojob.placement(answer, "7.0")
    assert place.running is running and why in place.why
    if running:
        assert place.host == "exec-3.example.org"


def test_exit_codes_come_from_the_scripts_record_of_that_run() -> None:
    lines = ["start 1 0", "exit 0 2 0", "start 3 1", "exit 137 4 1"]
    assert reach.exit_code(lines, 1) == 137
    assert reach.exit_code(lines, 0) == 0
    assert reach.exit_code(lines[:3], 1) is None


def test_pods_asking_for_stdin_or_a_terminal_are_refused() -> None:
    settings = script.Settings(node="n", runtime=PODMAN)
    for fields in ({"tty": True}, {"stdin": True, "stdin_once": True}):
        pod = PodSpec(
            uid=UID,
            namespace="ns",
            name="p",
            containers=(Container(name="main", image="busybox", **fields),),
        )
        with pytest.raises(UnsupportedPodFeature, match="no terminal") as caught:
            script.prepare(pod, layout=Layout("/w/n"), settings=settings, now=0)
        assert caught.value.reason == "UnsupportedPodSpec"


def test_the_killer_ends_every_process_with_the_mark_and_no_other() -> None:
    tag = uuid.uuid4().hex[:16]
    env = {**os.environ, reach.MARK: tag}
    sleep = f"sleep {3000 + uuid.uuid4().int % 999}.{uuid.uuid4().int % 999}"  # ours alone
    marked = subprocess.Popen(["sh", "-c", f"{sleep} & {sleep}; wait"], env=env)
    other = subprocess.Popen(sleep.split(), env={**os.environ, reach.MARK: tag + "x"})
    try:
        time.sleep(0.2)
        done = subprocess.run(reach.kill_argv(tag), capture_output=True, timeout=10)
        assert done.returncode == 0, done.stderr
        assert marked.wait(timeout=5) == -9
        left = subprocess.run(["pgrep", "-f", sleep], capture_output=True, text=True)
        assert left.stdout.split() == [str(other.pid)]
        assert other.poll() is None
    finally:
        other.kill()
        marked.kill()
