"""The HTCondor backend's pure parts: the whole pod as it is staged and submitted (the
description parsed by HTCondor's own parser), condor_* argv and output, the status
report, and the configuration."""

import json
import shlex
from pathlib import Path

import classad2
import pytest

from tests.unit.condor_parse import expanded
from vkpy.backend import Container, EnvVar, PodSpec, Running, Terminated, Waiting
from vkpy.backends.batch import records, report, script
from vkpy.backends.batch.naming import Layout
from vkpy.backends.htcondor import queue, state
from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.backends.htcondor.build import build_htcondor_backend
from vkpy.backends.htcondor.listing import _job, _view
from vkpy.backends.htcondor.state import by_pod
from vkpy.backends.htcondor.submit import submit_description
from vkpy.config import ConfigError, HTCondorConfig, load
from vkpy.transport import LocalRunner, SshRunner

FIXTURES = Path(__file__).parent.parent / "fixtures" / "htcondor"
UID = "0f6a2f0e-1b1c-4c3e-9a7e-2d4b8c9e1f00"
HOSTILE = [
    'it\'s "quoted"',
    "$(id) `id` ${HOME}",
    "a;b|c&d>e<f",
    "two\nlines\r\n",
    "ünïcødé ✓ 日本",
    "",
    "  spaced  ",
    "\\back\\slash",
]


def hostile_pod(**fields):
    container = Container(
        "main",
        "localhost/busybox:latest",
        command=("sh", "-c"),
        args=("printf '%s\\n' \"$@\"", "sh", *HOSTILE),
        env=tuple(EnvVar(f"V{i}", value) for i, value in enumerate(HOSTILE)),
    )
    values = dict(uid=UID, namespace="ns", name="hostile", containers=(container,), **fields)
    return PodSpec(**values)


def config(**fields):
    return HTCondorConfig.model_validate({"runtime": "podman", **fields})


def test_the_staged_pod_and_its_description():
    annotations = {"htcondor.vkpy.io/+Note": '"a \\"b\\" `c` ; | & ünï"'}
    spec = hostile_pod(annotations=annotations, active_deadline_seconds=60)
    settings = script.Settings.from_config(config(), node="vk-c")
    prepared = script.prepare(spec, layout=Layout("/home/u/vkpy/vk-c"), settings=settings, now=0)
    text = submit_description(spec, node_name="vk-c", base="/home/u/vkpy/vk-c")
    submit = expanded(text)
    assert submit["initialdir"] == prepared.pod_dir == f"/home/u/vkpy/vk-c/{UID}"
    assert submit["MY.Note"] == '"a \\"b\\" `c` ; | & ünï"'
    assert submit["MY.VkpyPodUID"] == f'"{UID}"'
    # Pod values travel in NUL-separated files only: not in the script, not in the
    # description.
    argv = next(f for f in prepared.files if f.path.endswith("main.argv")).data.split(b"\0")
    env = next(f for f in prepared.files if f.path.endswith("main.env")).data.split(b"\0")
    for value in HOSTILE:
        assert value.encode() in argv
        if value.strip():
            assert value not in prepared.script and value not in text
    assert any(word.endswith(b"=" + HOSTILE[3].encode()) for word in env)
    assert {f.mode for f in prepared.files if "/spec/" in f.path} == {0o600}


def test_every_annotation_value_survives_the_parser():
    for value in ('"' + v.replace('"', '\\"') + '"' for v in HOSTILE if "\n" not in v):
        spec = hostile_pod(annotations={"htcondor.vkpy.io/+Note": value})
        parsed = expanded(submit_description(spec, node_name="n", base="/w"))
        assert parsed["MY.Note"] == value.strip()


def test_constraints_parse_as_classad_expressions():
    for argv in (queue.condor_q_argv("vk-c"), queue.condor_q_argv("vk-c", uid=UID)):
        expression = classad2.ExprTree(argv[argv.index("-constraint") + 1])
        assert "VkpyNode" in str(expression)
    assert "VkpyPodUID" in queue.condor_rm_argv("vk-c", UID)[2]
    history = queue.condor_history_argv("vk-c", ["12.0", "7.3", "12.0"])
    assert history[:4] == ["condor_history", "-json", "-limit", "2"]
    expression = classad2.ExprTree(history[history.index("-constraint") + 1])
    for node, cluster, proc, wanted in (
        ("vk-c", 7, 3, True),
        ("vk-c", 12, 0, True),
        ("vk-c", 7, 0, False),  # another pod's job of the same cluster
        ("vk-c", 8, 3, False),
        ("vk-d", 7, 3, False),
    ):
        job = classad2.ClassAd({"VkpyNode": node, "ClusterId": cluster, "ProcId": proc})
        assert expression.eval(job) is wanted


def test_submit_and_existing_commands_quote_nothing_of_the_pod():
    prepared = script.Prepared(UID, "/w/p", (), (), "")
    argv = list(script.submission(prepared, queue.submit_argv("/w/p/job.sub"), existing=()).command)
    assert argv == ["condor_submit", "-terse", "/w/p/job.sub"]
    existing = queue.existing_argv("/w/p/status/_jobid", "vk-c", UID)
    assert existing[-1] == f'VkpyNode == "vk-c" && VkpyPodUID == "{UID}"'
    assert shlex.split(existing[2])  # the fixed script is valid shell text


@pytest.mark.parametrize(
    ("text", "job_id"),
    [
        ("12.0 - 12.0\n", "12.0"),
        ("7.0\n", "7.0"),
        ('[{"ClusterId": 3, "ProcId": 0}, {"ClusterId": 9, "ProcId": 0}]', "9.0"),
        ("", None),
        ("Submitting job(s).\n", None),
    ],
)
def test_job_ids(text, job_id):
    assert queue.parse_job_id(text) == job_id


def test_ads_of_the_fixtures_and_no_output():
    ads = queue.parse_ads((FIXTURES / "condor_history.json").read_text())
    assert [a["ClusterId"] for a in ads] == [98, 97, 96, 95]
    assert queue.parse_ads("") == []


def _files(*container_lines, job=("begin 100 host - -",), job_id="96.0"):
    meta = records.PodMeta("ns", "p", (), ("main",), {"main": "img"})
    files = records.PodFiles(meta=meta, job_id=job_id, job=list(job))
    files.containers["main"] = list(container_lines)
    return files


def _pod(files, ads):
    grouped = by_pod(json.loads((FIXTURES / ads).read_text()))
    uid = {"96.0": "96969696-0000", "95.0": "95959595-1111", "103.0": "33333333-cccc"}
    ads_of_pod = grouped.get(uid[files.job_id], ())
    queued, done = (ads_of_pod, ()) if ads == "condor_q.json" else ((), ads_of_pod)
    job = _job(files.job_id, queued, done)
    return report.pod_run("u", files, _view(files, job, lost=False))


def test_a_held_job_waits_with_its_hold_reason():
    run = _pod(_files(job=(), job_id="103.0"), "condor_q.json")
    state = run.containers[0].state
    assert isinstance(state, Waiting) and "Permission denied" in state.message


def test_a_removed_job_ends_its_running_container():
    run = _pod(_files("start 101 0"), "condor_history.json")
    state = run.containers[0].state
    assert isinstance(state, Terminated) and "removed" in state.message


def test_a_removed_job_still_in_the_queue_is_stopping_not_ended():
    """condor_q shows a removed job until its processes are vacated: its container still
    runs (stopping) until then."""
    removed = json.loads((FIXTURES / "condor_history.json").read_text())
    ads = [ad for ad in removed if state.job_id(ad) == "96.0"]
    assert ads and ads[0]["JobStatus"] == state.REMOVED
    files = _files("start 101 0")
    job = _job(files.job_id, tuple(ads), ())
    run = report.pod_run("u", files, _view(files, job, lost=False))
    assert isinstance(run.containers[0].state, Running)


def test_the_script_records_the_real_exit_code():
    files = _files("start 101 0", "exit 3 105 0", job=("begin 100 h - -", "end 3 105"))
    files.job_id = "95.0"
    run = _pod(files, "condor_history.json")
    assert (run.containers[0].state.exit_code, run.containers[0].state.reason) == (3, "Error")


def test_a_running_job_without_a_record_yet():
    view = _view(_files("start 101 0", job_id="5.0"), None, lost=False)
    run = report.pod_run("u", _files("start 101 0", job_id="5.0"), view)
    assert isinstance(run.containers[0].state, Running) and view.system == "HTCondor"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("backend: {kind: htcondor, submit_commands: {executable: /bin/x}}", "submit_commands"),
        ("backend: {kind: htcondor, submit_commands: {'bad name': x}}", "submit_commands"),
        ("backend: {kind: htcondor, runtime: docker}", "backend.htcondor.runtime"),
        ("backend: {kind: htcondor, kill_wait_seconds: 0}", "kill_wait_seconds"),
        ("backend: {kind: htcondor, ssh: {host: h}}", "backend.htcondor.ssh.user"),
        ("backend: {kind: htcondor, schedd: x}", "Extra inputs are not permitted"),
    ],
)
def test_bad_htcondor_config_names_the_field(tmp_path, text, field):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=field):
        load(path)


def test_the_runner_follows_the_config():
    over_ssh = build_htcondor_backend(config(ssh={"host": "submit", "user": "me"}), node_name="n")
    assert isinstance(over_ssh, HTCondorBackend) and isinstance(over_ssh.runner, SshRunner)
    local = build_htcondor_backend(config(submit_commands={"+Project": '"p"'}), node_name="n")
    assert isinstance(local.runner, LocalRunner)
    assert local.config.submit_commands == {"+Project": '"p"'}
