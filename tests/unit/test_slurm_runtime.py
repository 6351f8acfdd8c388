import json
import subprocess

import pytest

from vkpy.backend import Container, EnvVar
from vkpy.backends.batch import runtime
from vkpy.backends.batch.runtime import Bind, RuntimeOptions
from vkpy.errors import PodRejected

UID = "0f4b2c1e-1111-4222-8333-444455556666"
BINDS = (Bind("/w/volumes/config", "/etc/config", True), Bind("/w/volumes/scratch", "/scratch"))


def container(**fields):
    defaults = {"name": "main", "image": "busybox:1.36"}
    return Container(**{**defaults, **fields})


def test_podman_command_line():
    run = runtime.launch(
        container(
            command=("sh", "-c"),
            args=("echo $0", "two words"),
            working_dir="/data",
            env=(EnvVar("GREETING", "it's\nme"), EnvVar("HOME", "/root"), EnvVar("FOO*", "x")),
            image_pull_policy="Never",
        ),
        uid=UID,
        options=RuntimeOptions("podman", "/usr/bin/podman", flags=("--security-opt=x",)),
        binds=BINDS,
    )
    assert run.argv == (
        "/usr/bin/podman",
        "run",
        "--replace",
        f"--name=vkpy-{UID}-main",
        "--network=host",
        "--pull=never",
        "--env=GREETING",
        "--env=HOME=/root",  # Podman reads HOME itself: passed on the command line
        "--env=FOO*=x",  # a wildcard name would import host variables
        "--volume=/w/volumes/config:/etc/config:ro",
        "--volume=/w/volumes/scratch:/scratch:rw",
        "--workdir=/data",
        '--entrypoint=["sh", "-c"]',
        "--security-opt=x",
        "busybox:1.36",
        "echo $0",
        "two words",
    )
    assert run.env == ("GREETING=it's\nme",)


def test_podman_entrypoint_is_json_for_any_value():
    hostile = ("prog", '["json", "looking"]', 'quote"d', "new\nline", "日本")
    run = runtime.launch(
        container(command=hostile),
        uid=UID,
        options=RuntimeOptions("podman", "podman", network="none"),
        binds=(),
    )
    entrypoint = next(a for a in run.argv if a.startswith("--entrypoint="))
    assert json.loads(entrypoint.removeprefix("--entrypoint=")) == list(hostile)
    assert "--network=none" in run.argv


def test_podman_host_network_and_gpus():
    run = runtime.launch(
        container(image_pull_policy="Always"),
        uid=UID,
        options=RuntimeOptions("podman", "podman", network="none"),
        binds=(),
        gpus=2,
        host_network=True,
    )
    assert "--network=host" in run.argv
    assert "--pull=always" in run.argv
    assert "--device=nvidia.com/gpu=all" in run.argv
    assert run.argv[-1] == "busybox:1.36"  # no args: the image's own command runs


@pytest.mark.parametrize(
    ("kind", "prefix"), [("apptainer", "APPTAINERENV_"), ("singularity", "SINGULARITYENV_")]
)
def test_apptainer_and_singularity_command_lines(kind, prefix):
    run = runtime.launch(
        container(
            command=("python", "-c"),
            args=("print(1)",),
            working_dir="/data",
            env=(EnvVar("A", "1"), EnvVar("HOME", "/tmp"), EnvVar("A", "2")),
        ),
        uid=UID,
        options=RuntimeOptions(kind, f"/opt/{kind}/bin/{kind}", flags=("--nv",)),
        binds=BINDS,
        gpus=1,
    )
    assert run.argv == (
        f"/opt/{kind}/bin/{kind}",
        "exec",
        "--containall",
        "--writable-tmpfs",
        "--bind=/w/volumes/config:/etc/config:ro",
        "--bind=/w/volumes/scratch:/scratch:rw",
        "--pwd=/data",
        "--nv",
        "--nv",
        "docker://busybox:1.36",
        "python",
        "-c",
        "print(1)",
    )
    # The later duplicate wins, as in Kubernetes; every name travels prefixed.
    assert run.env == (f"{prefix}HOME=/tmp", f"{prefix}A=2")


def test_apptainer_runs_the_image_without_a_command():
    run = runtime.launch(
        container(args=("--flag",)),
        uid=UID,
        options=RuntimeOptions("apptainer", "apptainer"),
        binds=(),
    )
    assert run.argv[1] == "run"
    assert run.argv[-2:] == ("docker://busybox:1.36", "--flag")


@pytest.mark.parametrize(
    ("image", "reference"),
    [
        ("busybox", "docker://busybox"),
        ("ghcr.io/org/app:1.0", "docker://ghcr.io/org/app:1.0"),
        ("docker://busybox", "docker://busybox"),
        ("oras://reg/img:1", "oras://reg/img:1"),
        ("library://lolcow", "library://lolcow"),
        ("/shared/images/app.sif", "/shared/images/app.sif"),
    ],
)
def test_apptainer_image_references(image, reference):
    assert runtime.apptainer_image(image) == reference


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ((EnvVar("A", "x\0y"),), (), "NUL byte"),
        ((EnvVar("A=B", "x"),), (), "invalid variable name"),
        ((EnvVar("", "x"),), (), "invalid variable name"),
        ((), ("a\0b",), "NUL byte"),
    ],
)
def test_values_no_process_can_carry_are_refused(env, args, message):
    with pytest.raises(PodRejected, match=message):
        runtime.launch(
            container(env=env, args=args),
            uid=UID,
            options=RuntimeOptions("podman", "podman"),
            binds=(),
        )


@pytest.mark.parametrize(
    ("name", "owned"),
    [
        ("PATH", True),
        ("XDG_RUNTIME_DIR", True),
        ("CONTAINERS_CONF", True),
        ("LD_PRELOAD", True),
        ("http_proxy", True),
        ("A*", True),
        ("DATABASE_URL", False),
        ("my.var", False),
    ],
)
def test_variables_podman_reads_itself(name, owned):
    assert runtime.podman_owns(name) is owned


# ---------------------------------------------------------------- the container sweep

FAKE_PODMAN = r"""#!/bin/bash
# ps --all --quiet --filter name=REGEX: the ids of $STATE/<id> whose name matches;
# rm --force --time 0 IDS: removes them and logs the call.
case $1 in
    ps) regex=${5#name=}
        for f in "$STATE"/*; do [ -e "$f" ] || continue
            grep -Eq "$regex" "$f" && basename "$f"; done ;;
    rm) shift 4; echo "rm $*" >> "$STATE.log"; for id; do rm -f "$STATE/$id"; done ;;
esac
"""
OTHER = "0b1c9a62-3b1f-4f0e-9c39-2f5d1a7b8c91"


def test_the_sweep_runs_its_command_first_and_removes_only_the_pods_containers(tmp_path):
    podman = tmp_path / "podman"
    podman.write_text(FAKE_PODMAN)
    podman.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "c1").write_text(f"vkpy-{UID}-main")
    (state / "c2").write_text(f"vkpy-{UID}-side")
    (state / "c3").write_text(f"vkpy-{OTHER}-main")
    options = RuntimeOptions("podman", str(podman))
    first = ["sh", "-c", 'echo "$0" > "$1"; exit 3', "cancelled", str(tmp_path / "first")]
    argv = runtime.sweep_argv(options, [UID], first)
    done = subprocess.run(argv, env={"STATE": str(state), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 3  # the command's status, not the sweep's
    assert (tmp_path / "first").read_text() == "cancelled\n"
    assert sorted(p.name for p in state.iterdir()) == ["c3"]
    assert (tmp_path / "state.log").read_text().split() == ["rm", "c1", "c2"]


def test_only_podman_containers_need_a_sweep():
    apptainer = RuntimeOptions("apptainer", "apptainer")
    assert runtime.sweep_argv(apptainer, [UID], ["scancel", "7"]) == ("scancel", "7")
    assert runtime.sweep_argv(apptainer, [UID]) == ()
    with pytest.raises(PodRejected):
        runtime.sweep_argv(RuntimeOptions("podman", "podman"), ["$(reboot)"])
