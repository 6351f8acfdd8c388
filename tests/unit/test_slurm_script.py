"""The batch script: rendered (pure), then run for real in a local bash with a fake
container runtime that prints the argv and environment it was given, byte for byte."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from vkpy.backend import (
    POD_IP,
    Container,
    EnvVar,
    File,
    Mount,
    PodRun,
    PodSpec,
    Resources,
    Volume,
)
from vkpy.backends.batch import records, report, workdir
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.runtime import RuntimeOptions
from vkpy.backends.batch.script import Settings, StagedFile, Submission
from vkpy.backends.slurm.sbatch import Options, render
from vkpy.errors import PodRejected
from vkpy.testing.contract import HOSTILE_VALUES
from vkpy.testing.waiting import eventually_sync

UID = "5e0c9a62-3b1f-4f0e-9c39-2f5d1a7b8c90"

FAKE_RUNTIME = r"""#!/bin/bash
# A container runtime that runs nothing: it prints its argv and the FAKE_/V variables
# of its environment as hex, then behaves as the FAKE_ variables say. Like Podman's, its
# containers are stopped by name (stop, kill), not by signalling the `run` client: a run
# records its pid as $FAKE_STATE/<name>.pid (unnamed.pid) once its signal handling is in place.
case $1 in
    stop)  # stop --time SECONDS NAME
        read -r pid < "$FAKE_STATE/$4.pid" 2> /dev/null || exit 125  # no such container
        kill -TERM "$pid" 2> /dev/null
        for ((i = 0; i < $3 * 10; i++)); do kill -0 "$pid" 2> /dev/null || exit 0; sleep 0.1; done
        kill -KILL "$pid" 2> /dev/null
        exit 0 ;;
    kill)  # kill --signal SIGNAL NAME
        read -r pid < "$FAKE_STATE/$4.pid" 2> /dev/null || exit 125
        kill "-$3" "$pid" 2> /dev/null
        exit 0 ;;
    wait)  # wait NAME: the exit code of a container that ran to its end
        [ -n "${FAKE_WAIT_CODE:-}" ] && echo "$FAKE_WAIT_CODE" && exit 0
        read -r code < "$FAKE_STATE/$2.exit" 2> /dev/null && echo "$code" && exit 0
        exit 1 ;;
    inspect)  # inspect --format {{.State.Status}} NAME
        echo "${FAKE_INSPECT_STATUS:-exited}"
        exit 0 ;;
    rm) exit 0 ;;
esac
for v in $(compgen -e APPTAINERENV_FAKE_); do export "${v#APPTAINERENV_}=${!v}"; done
hex() { printf %s "$1" | od -An -v -tx1 | tr -d ' \n'; }
for a in "$@"; do printf 'ARG:%s\n' "$(hex "$a")"; done
env -0 | while IFS= read -r -d '' kv; do
    case $kv in V[0-9]*=*|SECRET=*) printf 'ENV:%s\n' "$(hex "$kv")" ;; esac
done
if [ -n "${FAKE_COUNTER:-}" ]; then
    n=$(cat "$FAKE_COUNTER" 2>/dev/null || echo 0); echo $((n + 1)) > "$FAKE_COUNTER"
    [ "$n" -lt "${FAKE_FAIL_TIMES:-0}" ] && exit 7
fi
[ -n "${FAKE_IGNORE_TERM:-}" ] && trap '' TERM
[ -n "${FAKE_TERM_EXITS_0:-}" ] && trap 'exit 0' TERM  # as a signalled `podman run` does
name=unnamed  # Apptainer's containers have no name
for a in "$@"; do case $a in --name=*) name=${a#--name=} ;; esac; done
[ -n "${FAKE_STATE:-}" ] && echo $$ > "$FAKE_STATE/$name.pid"
# The sleep lets go of the log as a stopped container's processes would: they end with it.
if [ -n "${FAKE_SLEEP:-}" ]; then
    sleep "$FAKE_SLEEP" > /dev/null 2>&1 & wait $!; sleep "$FAKE_SLEEP"
fi
[ -n "${FAKE_STATE:-}" ] && echo "${FAKE_EXIT:-0}" > "$FAKE_STATE/$name.exit"
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def fake_runtime(tmp_path: Path) -> Path:
    path = tmp_path / "fake-runtime"
    path.write_text(FAKE_RUNTIME)
    path.chmod(0o755)
    return path


def settings(runtime: Path, kind: str = "podman", **changes: object) -> Settings:
    values: dict[str, object] = {
        "node": "node-1",
        "runtime": RuntimeOptions(kind, str(runtime)),
        "backoff_seconds": 1,
        "kill_wait_seconds": 5,
        **changes,
    }
    return Settings(**values)


def app(name: str, *, env: dict[str, str] | None = None, **fields: object) -> Container:
    variables = tuple(EnvVar(k, v) for k, v in (env or {}).items())
    return Container(name=name, image="img:1", env=variables, **fields)


def pod_spec(*containers: Container, **fields: object) -> PodSpec:
    values: dict[str, object] = {
        "uid": UID,
        "namespace": "team-a",
        "name": "job-1",
        "containers": containers,
        "restart_policy": "Never",
        "termination_grace_period_seconds": 1,
        **fields,
    }
    return PodSpec(**values)


def stage(submission: Submission) -> Path:
    """What create() does on the login node (one tar extraction), done locally."""
    root = workdir.staging_root(submission.dirs)
    Path(root).mkdir(parents=True, exist_ok=True)
    data = workdir.archive(root, submission.dirs, submission.files, mtime=0)
    subprocess.run(workdir.extract_argv(root), input=data, check=True)
    return Path(submission.pod_dir)


def fake_state(submission: Submission) -> Path:
    """Where the fake runtime keeps its containers' pids, by container name."""
    return Path(submission.pod_dir).parent / "fake-state"


def start(submission: Submission, **env: str) -> subprocess.Popen[bytes]:
    directory = stage(submission)
    state = fake_state(submission)
    state.mkdir(exist_ok=True)
    return subprocess.Popen(
        ["bash", str(directory / "job.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            "PATH": os.environ["PATH"],
            "HOME": "/home/nobody",
            "SLURM_JOB_ID": "42",
            "FAKE_STATE": str(state),
            **env,
        },
    )


def run_job(submission: Submission, timeout: float = 30, **env: str) -> int:
    process = start(submission, **env)
    out, err = process.communicate(timeout=timeout)
    assert out == b"", out
    assert err == b"", err
    return process.returncode


STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z[ +]")


def unstamped(text: str) -> list[str]:
    """A log file's lines without the stamp the job script puts before each."""
    lines = text.splitlines()
    assert all(STAMP.match(line) for line in lines), lines
    return [line[31:] for line in lines]


def logged(directory: Path, container: str, run: int = 0) -> tuple[list[bytes], list[bytes]]:
    lines = unstamped((directory / "logs" / f"{container}.{run}.log").read_text())
    args = [bytes.fromhex(line[4:]) for line in lines if line.startswith("ARG:")]
    env = [bytes.fromhex(line[4:]) for line in lines if line.startswith("ENV:")]
    return args, env


def pod_files(layout: Layout) -> dict[str, records.PodFiles]:
    """The status files as list() reads them: grep -H over status/."""
    output = subprocess.run(
        ["grep", "-a", "-H", "-r", "", layout.status(UID)], capture_output=True, text=True
    ).stdout
    return records.parse_status_lines(output, layout)


def pod_run(layout: Layout) -> PodRun:
    files = pod_files(layout)[UID]
    run = report.pod_run(UID, files, report.job_view(files, None, system="Slurm"))
    assert run is not None
    return run


# ---------------------------------------------------------------- rendering


def test_render_stages_a_private_work_directory(tmp_path, fake_runtime):
    layout = Layout(str(tmp_path / "base"))
    secret = Volume("token", "files", files=(File("t", b"s3cr3t-\x00"),), sensitive=True)
    config = Volume(
        "config", "files", files=(File("a.yaml", b"a: 1\n"), File("deep/er/b", b"b", 0o640))
    )
    pod = pod_spec(
        app(
            "main",
            env={"SECRET": "hunter2-env"},
            args=("hunter2-arg",),
            mounts=(Mount("token", "/var/run/token"), Mount("config", "/etc/config")),
        ),
        volumes=(secret, config, Volume("scratch", "emptyDir")),
    )
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=1000.0)
    modes = {path: mode for path, mode in submission.dirs}
    assert modes[submission.pod_dir] == 0o700
    assert modes[f"{submission.pod_dir}/volumes/config/deep/er"] == 0o755
    assert modes[f"{submission.pod_dir}/volumes/scratch"] == 0o777
    files = {f.path.removeprefix(submission.pod_dir + "/"): f for f in submission.files}
    assert (
        files["volumes/token/t"].mode == 0o644 and files["volumes/token/t"].data == b"s3cr3t-\x00"
    )
    assert files["volumes/config/deep/er/b"].mode == 0o640
    assert files["spec/main.argv"].mode == files["spec/main.env"].mode == 0o600
    assert files["job.sh"].mode == 0o700
    # Pod values live in the 0600 spec files, never in the script Slurm keeps.
    for value in ("hunter2-env", "hunter2-arg", "s3cr3t"):
        assert value not in submission.script
        assert value not in repr(submission)
    assert b"hunter2-env" in files["spec/main.env"].data
    assert subprocess.run(["bash", "-n"], input=submission.script.encode()).returncode == 0


def test_sbatch_argv(tmp_path, fake_runtime):
    layout = Layout("/home/u/vkpy/node-1")
    pod = pod_spec(
        app("main", resources=Resources(cpu_millis=1500, memory_bytes=2 * 1024**3, gpus=1)),
        active_deadline_seconds=90,
        restart_policy="OnFailure",
        annotations={"slurm.vkpy.io/flags": "--constraint=fast", "slurm.vkpy.io/qos": "hi"},
    )
    options = Options(partition="debug", account="acct", sbatch_flags=("--nice=5",))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=0, options=options)
    directory = f"/home/u/vkpy/node-1/{UID}"
    assert submission.command == (
        "sbatch",
        "--parsable",
        f"--job-name=vkpy_node-1_{UID}",
        f"--comment=vkpy node=node-1 pod=team-a/job-1 uid={UID}",
        f"--chdir={directory}",
        f"--output={directory}/logs/_job.out",
        "--export=ALL",
        "--requeue",
        "--partition=debug",
        "--account=acct",
        "--nice=5",
        "--constraint=fast",
        "--qos=hi",
        "--cpus-per-task=2",
        "--mem=2048M",
        "--gres=gpu:1",
        "--time=2",
        f"{directory}/job.sh",
    )
    assert submission.existing[-2:] == (f"{directory}/status/_jobid", f"vkpy_node-1_{UID}")
    assert "DEADLINE=90 " in submission.script


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"uid": "../../etc"}, "not a UUID"),
        ({"namespace": "Bad_NS"}, "not a DNS label"),
        ({"name": "x\ny"}, "not a DNS subdomain"),
        ({"containers": (app("Main"),)}, "not a DNS label"),
        ({"containers": (app("a"), app("a"))}, "same name"),
        ({"containers": ()}, "no containers"),
        ({"containers": (app("a", mounts=(Mount("nope", "/x"),)),)}, "unknown volume nope"),
        ({"containers": (app("a", mounts=(Mount("v", "relative"),)),)}, "absolute path"),
        ({"containers": (app("a", mounts=(Mount("v", "/a:b"),)),)}, "cannot pass"),
        ({"containers": (app("a", mounts=(Mount("v", "/x", sub_path="../up"),)),)}, "without '..'"),
        ({"annotations": {"slurm.vkpy.io/flags": "--output=/tmp/x"}}, "not allowed"),
        (
            {
                "volumes": (Volume("v", "files", files=(File("../escape", b""),)),),
            },
            "without '..'",
        ),
        (
            {
                "containers": (app("a", mounts=(Mount("h", "/data"),)),),
                "volumes": (Volume("h", "hostPath", host_path="/etc"),),
            },
            "not under an allowed directory",
        ),
    ],
)
def test_pods_that_cannot_run_are_rejected(tmp_path, fake_runtime, change, message):
    values = {"volumes": (Volume("v", "emptyDir"),), **change}
    pod = pod_spec(app("main"), **values) if "containers" not in change else None
    if pod is None:
        containers = values.pop("containers")
        pod = pod_spec(*containers, **values)
    with pytest.raises(PodRejected, match=message):
        render(pod, layout=Layout(str(tmp_path)), settings=settings(fake_runtime), now=0)


def test_host_paths_under_allowed_directories(tmp_path, fake_runtime):
    pod = pod_spec(
        app("main", mounts=(Mount("h", "/data", sub_path="sub"),)),
        volumes=(Volume("h", "hostPath", host_path="/scratch/team/../team/x"),),
    )
    conf = settings(fake_runtime, allowed_host_paths=("/scratch",))
    submission = render(pod, layout=Layout(str(tmp_path)), settings=conf, now=0)
    argv = next(f for f in submission.files if f.path.endswith("main.argv")).data.split(b"\0")
    assert b"--volume=/scratch/team/x/sub:/data:rw" in argv


# ---------------------------------------------------------------- running the script


@pytest.mark.parametrize("kind", ["podman", "apptainer"])
def test_hostile_values_reach_the_program_byte_for_byte(tmp_path, fake_runtime, kind):
    marker = tmp_path / "pwned"
    hostile = (
        *HOSTILE_VALUES,
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}; | & touch {marker} &&",
        f"'; touch {marker}; '",
        f'"; touch {marker}; "',
        "-\n--env=INJECTED=1",
        "%(%s)T \\0 \\x41",
    )
    env = {f"V{i}": value for i, value in enumerate(hostile)}
    pod = pod_spec(app("main", command=("prog",), args=hostile, env=env))
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime, kind), now=0)
    assert run_job(submission) == 0
    args, variables = logged(Path(submission.pod_dir), "main")
    assert args[-len(hostile) :] == [v.encode() for v in hostile]
    prefix = "APPTAINERENV_" if kind == "apptainer" else ""
    expected = sorted(f"{prefix}V{i}={v}".encode() for i, v in enumerate(hostile))
    if kind == "podman":
        assert sorted(variables) == expected
        assert [a for a in args if a.startswith(b"--env=")] == [
            f"--env=V{i}".encode() for i in range(len(hostile))
        ]
    else:
        raw = (Path(submission.pod_dir) / "spec" / "main.env").read_bytes()
        assert sorted(raw.split(b"\0")[:-1]) == expected
    assert not marker.exists(), "a value was executed"


def test_containers_run_in_order_and_the_worst_exit_code_wins(tmp_path, fake_runtime):
    pod = pod_spec(
        app("ok", env={"FAKE_SLEEP": "0.5"}),
        app("three", env={"FAKE_EXIT": "3", "FAKE_SLEEP": "0.5"}),
        app("one", env={"FAKE_EXIT": "1"}),
        init_containers=(app("first"), app("second")),
    )
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=0)
    began = time.monotonic()
    assert run_job(submission) == 3
    assert time.monotonic() - began < 2.5  # the app containers ran side by side
    run = pod_run(layout)
    assert [c.name for c in run.init_containers] == ["first", "second"]
    codes = {c.name: c.state.exit_code for c in (*run.init_containers, *run.containers)}
    assert codes == {"first": 0, "second": 0, "ok": 0, "three": 3, "one": 1}
    reasons = {c.name: c.state.reason for c in run.containers}
    assert reasons == {"ok": "Completed", "three": "Error", "one": "Error"}
    second, first = run.init_containers[1].state, run.init_containers[0].state
    assert second.started_at >= first.finished_at
    assert run.job_id == "" and run.pod_ip is not None


def test_podman_says_how_the_container_ended(tmp_path, fake_runtime):
    """A signalled `podman run` exits 0 while its container runs on: the exit code is
    the one `podman wait` reports for the container."""
    layout = Layout(str(tmp_path / "base"))
    submission = render(
        pod_spec(app("main")), layout=layout, settings=settings(fake_runtime), now=0
    )
    assert run_job(submission, FAKE_WAIT_CODE="143") == 143
    main = pod_run(layout).containers[0].state
    assert (main.exit_code, main.reason) == (143, "Error")


def test_a_container_created_but_never_started_did_not_complete(tmp_path, fake_runtime):
    """`podman wait` answers 0 at once for a container Podman created but never started
    (its `podman run` signalled in between, as by an scancel): recorded as 137, never
    as Completed."""
    layout = Layout(str(tmp_path / "base"))
    submission = render(
        pod_spec(app("main")), layout=layout, settings=settings(fake_runtime), now=0
    )
    assert run_job(submission, FAKE_WAIT_CODE="0", FAKE_INSPECT_STATUS="created") == 137
    main = pod_run(layout).containers[0].state
    assert (main.exit_code, main.reason) == (137, "Error")


def test_a_failed_init_container_stops_the_pod(tmp_path, fake_runtime):
    pod = pod_spec(
        app("main"),
        init_containers=(app("setup", env={"FAKE_EXIT": "2"}), app("never")),
    )
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=0)
    assert run_job(submission) == 2
    directory = Path(submission.pod_dir)
    assert not (directory / "status" / "never").exists()
    assert not (directory / "status" / "main").exists()
    run = pod_run(layout)
    assert run.init_containers[0].state.exit_code == 2
    assert run.containers[0].state.reason == "PodInitializing"


def test_on_failure_restarts_with_back_off(tmp_path, fake_runtime):
    counter = tmp_path / "count"
    pod = pod_spec(
        app("flaky", env={"FAKE_COUNTER": str(counter), "FAKE_FAIL_TIMES": "2"}),
        restart_policy="OnFailure",
    )
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=0)
    began = time.monotonic()
    assert run_job(submission) == 0
    assert 3 <= time.monotonic() - began < 8  # back-off 1 s, then 2 s
    assert counter.read_text().strip() == "3"
    status = (Path(submission.pod_dir) / "status" / "flaky").read_text().split("\n")
    events = [line.split()[0] for line in status if line]
    assert [word for word in events if word != "image"] == [
        "start",
        "exit",
        "wait",
        "start",
        "exit",
        "wait",
        "start",
        "exit",
    ]
    for run_number in range(3):
        assert logged(Path(submission.pod_dir), "flaky", run_number)[0]
    flaky = pod_run(layout).containers[0]
    assert flaky.restart_count == 2
    assert flaky.state.exit_code == 0
    assert flaky.last_state is not None and flaky.last_state.exit_code == 7


@pytest.mark.parametrize("kind", ["podman", "apptainer"])
@pytest.mark.parametrize(("ignore_term", "code"), [(False, 143), (True, 137)])
def test_sigterm_stops_containers_within_the_grace_period(
    tmp_path, fake_runtime, ignore_term, code, kind
):
    env = {"FAKE_SLEEP": "30"}
    if ignore_term:
        env["FAKE_IGNORE_TERM"] = "1"
    pod = pod_spec(app("main", env=env), restart_policy="Always")
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime, kind), now=0)
    process = start(submission)
    directory = Path(submission.pod_dir)
    # The runtime is ready (its TERM disposition set) once it records its pid.
    name = f"vkpy-{UID}-main" if kind == "podman" else "unnamed"
    pid_file = fake_state(submission) / f"{name}.pid"
    eventually_sync(pid_file.exists, what=f"{pid_file} to appear", timeout=10, interval=0.05)
    (directory / "grace").write_text("1\n")  # as delete() writes it
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == code
    took = time.monotonic() - began
    assert took < 4
    if ignore_term:  # KILL came when the grace period ran out, not before
        assert took >= 1
    run = pod_run(layout)
    main = run.containers[0]
    assert main.state.exit_code == code and main.restart_count == 0
    events = records.job_events(pod_files(layout)[UID].job)
    assert events.stop_why == "signal" and events.exit_code == code


def test_a_shorter_grace_period_handed_over_while_stopping_wins(tmp_path, fake_runtime):
    """The deadline stops the pod with its own grace period (30 s); the agent's delete
    then hands over 0 s: the container is killed at once, not 30 s later."""
    env = {"FAKE_SLEEP": "60", "FAKE_IGNORE_TERM": "1"}
    pod = pod_spec(
        app("main", env=env),
        active_deadline_seconds=1,
        termination_grace_period_seconds=30,
    )
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=time.time())
    process = start(submission)
    directory = Path(submission.pod_dir)
    stop = directory / "stop"
    eventually_sync(stop.exists, what=f"{stop} to appear", timeout=5, interval=0.05)
    time.sleep(0.5)
    assert process.poll() is None  # stopping, within its 30 s
    (directory / "grace").write_text("0\n")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 137


def test_deadline_stops_the_pod(tmp_path, fake_runtime):
    pod = pod_spec(app("main", env={"FAKE_SLEEP": "30"}), active_deadline_seconds=1)
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=time.time())
    began = time.monotonic()
    run_job(submission)
    assert time.monotonic() - began < 6
    run = pod_run(layout)
    assert run.reason == "DeadlineExceeded"
    assert run.containers[0].state.reason == "DeadlineExceeded"


def test_a_pod_deleted_before_its_job_started_runs_nothing(tmp_path, fake_runtime):
    submission = render(
        pod_spec(app("main")),
        layout=Layout(str(tmp_path / "base")),
        settings=settings(fake_runtime),
        now=0,
    )
    directory = stage(submission)
    (directory / "grace").write_text("0\n")
    assert run_job(submission) == 143
    assert not (directory / "status" / "main").exists()


def test_memory_empty_dirs_live_in_dev_shm_and_are_removed(tmp_path, fake_runtime):
    pod = pod_spec(
        app("main", mounts=(Mount("cache", "/cache", sub_path="sub"),)),
        volumes=(Volume("cache", "emptyDir", medium="Memory"),),
    )
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=0)
    assert run_job(submission) == 0
    link = Path(submission.pod_dir) / "volumes" / "cache"
    target = os.readlink(link)
    assert target.startswith(f"/dev/shm/vkpy-{UID}-cache.")
    assert not Path(target).exists()  # removed when the job ended
    args, _ = logged(Path(submission.pod_dir), "main")
    assert f"--volume={link}/sub:/cache:rw".encode() in args


def test_staged_modes_on_disk(tmp_path, fake_runtime):
    pod = pod_spec(
        app("main", env={"SECRET": "x"}),
        volumes=(Volume("s", "files", files=(File("k", b"v"),), sensitive=True),),
    )
    submission = render(
        pod, layout=Layout(str(tmp_path / "base")), settings=settings(fake_runtime), now=0
    )
    previous = os.umask(0o022)  # a login shell's usual umask must not widen anything
    try:
        directory = stage(submission)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # The secret's mode is the pod's; the directory above it keeps others out.
    assert stat.S_IMODE((directory / "volumes" / "s" / "k").stat().st_mode) == 0o644
    assert stat.S_IMODE((directory / "spec" / "main.env").stat().st_mode) == 0o600


def test_nothing_is_staged_outside_the_work_directory(tmp_path):
    outside = [StagedFile(str(tmp_path / "other" / "x"), b"x")]
    with pytest.raises(PodRejected):
        workdir.archive(
            str(tmp_path / "base"), [(str(tmp_path / "base" / "p"), 0o700)], outside, mtime=0
        )


def test_the_job_fills_in_the_pod_ip_from_the_compute_node(tmp_path, fake_runtime):
    pod = pod_spec(app("main", env={"V1": f"ip={POD_IP}"}, args=(f"--ip={POD_IP}",)))
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=0)
    assert run_job(submission) == 0
    node_ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[0]
    args, env = logged(Path(submission.pod_dir), "main")
    assert f"--ip={node_ip}".encode() in args
    assert env == [f"V1=ip={node_ip}".encode()]


def test_a_container_stopped_before_podman_knew_it_is_not_completed(tmp_path, fake_runtime):
    """A signalled `podman run` exits 0; when Podman cannot say how the container ended
    (it was still being created), the job does not record a success."""
    pod = pod_spec(app("main", env={"FAKE_SLEEP": "30", "FAKE_TERM_EXITS_0": "1"}))
    layout = Layout(str(tmp_path / "base"))
    submission = render(pod, layout=layout, settings=settings(fake_runtime), now=0)
    process = start(submission)
    pid_file = fake_state(submission) / f"vkpy-{UID}-main.pid"
    eventually_sync(pid_file.exists, what=f"{pid_file} to appear", timeout=10, interval=0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 137
    main = pod_run(layout).containers[0]
    assert main.state.exit_code == 137 and main.state.reason != "Completed"
