"""HTCondor with file transfer (``file_transfer: transfer``): the description (parsed by
HTCondor's own parser), the job script run from a copy of the pod's directory, the
stand-in's emulation of the transfer, and the status of a job whose files are away."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.condor_parse import expanded
from vkpy.backend import Mount, Running, Volume, Waiting
from vkpy.backends.batch import records
from vkpy.backends.batch.book import Known
from vkpy.backends.batch.naming import Layout
from vkpy.backends.htcondor.listing import Listing, _from_the_queue
from vkpy.backends.htcondor.state import job_state
from vkpy.backends.htcondor.submit import submit_description
from vkpy.backends.slurm.sbatch import render
from vkpy.errors import PodRejected
from vkpy.testing import condor_standin
from vkpy.transport import LocalRunner

from .test_slurm_script import FAKE_RUNTIME, UID, app, logged, pod_spec, settings, stage


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    path = tmp_path / "fake-runtime"
    path.write_text(FAKE_RUNTIME)
    path.chmod(0o755)
    return path


def volume_pod():
    return pod_spec(
        app("main", mounts=(Mount("work", "/work"), Mount("conf", "/etc/c"), Mount("host", "/d"))),
        init_containers=(app("setup", mounts=(Mount("work", "/work", sub_path="sub"),)),),
        volumes=(
            Volume("work", "emptyDir"),
            Volume("conf", "files", files=()),
            Volume("host", "hostPath", host_path="/srv/data"),
        ),
    )


def test_the_transfer_description_parses_with_htcondor():
    text = submit_description(
        pod_spec(app("main")), node_name="n", base="/home/u/vkpy/n", transfer=True
    )
    submit = expanded(text)
    assert submit["should_transfer_files"] == "YES"
    assert submit["when_to_transfer_output"] == "ON_EXIT_OR_EVICT"
    # bash from the execute node runs the script, which travels with the input.
    assert (submit["executable"], submit["transfer_executable"]) == ("/bin/bash", "false")
    assert submit["transfer_input_files"] == "job.sh,spec,status,volumes"
    assert submit["transfer_output_files"] == "status,logs"
    assert submit["initialdir"] == f"/home/u/vkpy/n/{UID}"  # where the output comes back
    shared = expanded(submit_description(pod_spec(app("main")), node_name="n", base="/w"))
    assert shared["should_transfer_files"] == "NO" and "transfer_input_files" not in shared


@pytest.mark.parametrize("command", ["when_to_transfer_output", "transfer_output_remaps"])
def test_transfer_commands_are_vkpys(command):
    bad = pod_spec(app("main"), annotations={f"htcondor.vkpy.io/{command}": "ON_EXIT"})
    with pytest.raises(PodRejected, match="set by vkpy"):
        submit_description(bad, node_name="n", base="/w", transfer=True)


def test_shared_rendering_is_unchanged(tmp_path, runtime):
    layout = Layout(str(tmp_path / "base"))
    allowed = settings(runtime, allowed_host_paths=("/srv",))
    submission = render(volume_pod(), layout=layout, settings=allowed, now=0)
    assert f"cd -- {submission.pod_dir} ||" in submission.script
    assert not [f for f in submission.files if f.path.endswith(".rel")]


def test_the_relocatable_script_runs_in_a_copy_of_the_pod_directory(tmp_path, runtime):
    layout = Layout(str(tmp_path / "base"))
    submission = render(
        volume_pod(),
        layout=layout,
        settings=settings(runtime, relocatable=True, allowed_host_paths=("/srv",)),
        now=0,
    )
    assert "cd -- . ||" in submission.script
    pod_dir = stage(submission)
    scratch = tmp_path / "scratch"  # what HTCondor makes of transfer_input_files
    scratch.mkdir()
    for name in ("spec", "status", "volumes"):
        shutil.copytree(pod_dir / name, scratch / name, symlinks=True)
    shutil.rmtree(scratch / "volumes" / "work")  # an empty directory may not travel
    state = tmp_path / "fake-state"  # where the fake runtime keeps its containers
    state.mkdir()
    done = subprocess.run(
        ["bash", str(pod_dir / "job.sh")],
        cwd=scratch,
        capture_output=True,
        timeout=30,
        env={**os.environ, "FAKE_STATE": str(state)},
    )
    assert (done.returncode, done.stderr) == (0, b"")
    args, _ = logged(scratch, "main")
    assert f"--volume={scratch}/volumes/work:/work:rw".encode() in args
    assert f"--volume={scratch}/volumes/conf:/etc/c:ro".encode() in args
    assert b"--volume=/srv/data:/d:rw" in args
    init_args, _ = logged(scratch, "setup")
    assert f"--volume={scratch}/volumes/work/sub:/work:rw".encode() in init_args
    assert (scratch / "volumes" / "work" / "sub").is_dir()
    assert (scratch / "status" / "_job").exists()
    assert not (pod_dir / "status" / "_job").exists()
    assert not list((pod_dir / "logs").iterdir())


def test_a_running_transfer_job_is_reported_from_the_queue():
    meta = records.PodMeta("ns", "p", init=("setup",), containers=("a", "b"))
    files = records.PodFiles(meta=meta, job_id="7.0")
    job = job_state({"ClusterId": 7, "JobStatus": 2, "JobCurrentStartDate": 1_700_000_000})
    seen = _from_the_queue(files, job)
    assert seen.containers["setup"] == ["start 1700000000 0"] and not seen.containers["a"]
    no_init = records.PodFiles(meta=records.PodMeta("ns", "p", (), ("a", "b")), job_id="7.0")
    listing = Listing(LocalRunner(), node="n", transfer=True)
    run = listing._record(UID, Known(), no_init, job)
    assert run is not None
    for container in run.containers:
        assert isinstance(container.state, Running)
        assert container.state.started_at.timestamp() == 1_700_000_000
    idle = job_state({"ClusterId": 7, "JobStatus": 1})
    waiting = Listing(LocalRunner(), node="n", transfer=True)._record(UID, Known(), no_init, idle)
    assert waiting is not None and isinstance(waiting.containers[0].state, Waiting)
    ended = records.PodFiles(meta=meta, job_id="7.0", job=["begin 5 h 7.0 -"])
    assert _from_the_queue(ended, job) is ended  # the files came back: they say it all


def test_a_transfer_job_runs_from_its_event_log_before_the_queue_says_so():
    """The fast clock reads the execute event: the pod runs since it, whatever the last
    condor_q (idle, or none yet) said; a log of another job, or one that ended, does not."""
    meta = records.PodMeta("ns", "p", init=(), containers=("a",))
    executing = [
        "000 (007.000.000) 2023-11-14 23:13:10 Job submitted from host: <h>",
        "...",
        "001 (007.000.000) 2023-11-14 23:13:20 Job executing on host: <h>",
        "...",
    ]
    listing = Listing(LocalRunner(), node="n", transfer=True)
    listing.tail.utc_offset = 3600  # the submit node's local time is UTC+1
    idle = job_state({"ClusterId": 7, "JobStatus": 1})
    for job in (None, idle):
        files = records.PodFiles(meta=meta, job_id="7.0", events=executing)
        run = listing._record(UID, Known(), files, job)
        assert run is not None and isinstance(run.containers[0].state, Running)
        assert run.containers[0].state.started_at.timestamp() == 1_700_000_000
    for events in (executing[:2], [*executing, "005 (007.000.000) 2023-11-14 23:14:00 x", "..."]):
        files = records.PodFiles(meta=meta, job_id="7.0", events=events)
        run = listing._record(UID, Known(), files, idle)
        assert run is not None and isinstance(run.containers[0].state, Waiting)
    other = records.PodFiles(meta=meta, job_id="8.0", events=executing)
    run = listing._record(UID, Known(), other, idle)
    assert run is not None and isinstance(run.containers[0].state, Waiting)


def test_the_standin_transfers_input_and_output(tmp_path, monkeypatch):
    monkeypatch.setattr(condor_standin, "STATE", tmp_path / "state")
    iwd = tmp_path / "pod"
    (iwd / "spec").mkdir(parents=True)
    (iwd / "spec" / "x").write_text("input\n")
    (iwd / "status").mkdir()
    (iwd / "logs").mkdir()
    (iwd / "job.sh").write_text(
        'mkdir -p logs status\npwd > status/where\necho "$_CONDOR_SCRATCH_DIR" '
        ">> status/where\ncat spec/x > logs/out\nexit 3\n"
    )
    (iwd / "job.sh").chmod(0o700)
    spec = pod_spec(app("main"))
    text = submit_description(spec, node_name="n", base=str(tmp_path), transfer=True)
    (tmp_path / spec.uid).symlink_to(iwd)
    (tmp_path / "state" / "jobs").mkdir(parents=True)
    condor_standin._save(condor_standin._job_ad(expanded(text), 1, 0, now=0))
    condor_standin.run_job("1.0")
    scratch = tmp_path / "state" / "execute" / "dir_1.0"
    assert (iwd / "status" / "where").read_text() == f"{scratch}\n{scratch}\n"
    assert (iwd / "logs" / "out").read_text() == "input\n"
    assert not scratch.exists()
    final = json.loads((tmp_path / "state" / "jobs" / "1.0.json").read_text())
    assert (final["JobStatus"], final["ExitCode"]) == (4, 3)
