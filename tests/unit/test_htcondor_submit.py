"""Submit descriptions and ClassAd states of the HTCondor backend; every generated
description is parsed by HTCondor's own parser (htcondor2.Submit, no pool needed)."""

import json
from pathlib import Path

import htcondor2
import pytest

from vkpy.backend import Container, PodSpec, Resources, Running, Terminated, Waiting
from vkpy.backends.htcondor.state import job_state
from vkpy.backends.htcondor.submit import node_constraint, pod_resources, submit_description
from vkpy.errors import PodRejected

FIXTURES = Path(__file__).parent.parent / "fixtures" / "htcondor"


def pod(**kwargs):
    defaults = dict(
        uid="uid-1",
        namespace="ns",
        name='we"ird',
        containers=(
            Container("a", "img", resources=Resources(cpu_millis=1500, memory_bytes=256 << 20)),
            Container(
                "b", "img", resources=Resources(cpu_millis=500, memory_bytes=128 << 20, gpus=1)
            ),
        ),
        init_containers=(Container("init", "img", resources=Resources(cpu_millis=4000)),),
    )
    return PodSpec(**{**defaults, **kwargs})


def parse(text):
    return dict(htcondor2.Submit(text).items())


def test_description_parses_with_htcondor_and_carries_the_pod():
    text = submit_description(
        pod(active_deadline_seconds=600),
        node_name="vk-1",
        script="/home/u/.vkpy/pods/uid-1/run.sh",
        work_dir="/home/u/.vkpy/pods/uid-1",
    )
    submit = parse(text)
    assert submit["executable"] == "/home/u/.vkpy/pods/uid-1/run.sh"
    assert submit["request_cpus"] == "4"  # the init container needs more than both apps
    assert submit["request_memory"] == "384MB"
    assert submit["request_gpus"] == "1"
    assert submit["allowed_job_duration"] == "600"
    assert submit["MY.VkpyPodUID"] == '"uid-1"'
    assert submit["MY.VkpyNode"] == '"vk-1"'
    assert submit["MY.VkpyPodName"] == '"we\\"ird"'


def test_extra_commands_from_config_and_annotations():
    annotated = pod(
        annotations={
            "htcondor.vkpy.io/+AccountingGroup": '"physics.alice"',
            "htcondor.vkpy.io/requirements": "(OpSysMajorVer == 9)",
            "other.io/ignored": "x",
        }
    )
    submit = parse(
        submit_description(
            annotated,
            node_name="n",
            script="/s",
            work_dir="/w",
            config_extra={"requirements": "True", "+ProjectName": '"x"'},
        )
    )
    assert submit["requirements"] == "(OpSysMajorVer == 9)"
    assert submit["MY.AccountingGroup"] == '"physics.alice"'
    assert submit["MY.ProjectName"] == '"x"'


@pytest.mark.parametrize(
    "command", ["executable", "Output", "queue", "+VkpyPodUID", "arguments", "bad name"]
)
def test_contract_breaking_commands_are_refused(command):
    bad = pod(annotations={f"htcondor.vkpy.io/{command}": "x"})
    with pytest.raises(PodRejected, match="HTCondor submit command"):
        submit_description(bad, node_name="n", script="/s", work_dir="/w")


def test_multiline_values_are_refused():
    bad = pod(annotations={"htcondor.vkpy.io/requirements": "True\nexecutable = /bin/evil"})
    with pytest.raises(PodRejected, match="spans lines"):
        submit_description(bad, node_name="n", script="/s", work_dir="/w")


def test_pod_resources_without_requests():
    plain = pod(containers=(Container("a", "img"),), init_containers=())
    assert pod_resources(plain) == Resources()
    assert (
        parse(submit_description(plain, node_name="n", script="/s", work_dir="/w"))["request_cpus"]
        == "1"
    )


def test_node_constraint_quotes_the_name():
    assert node_constraint("vk-1") == 'VkpyNode == "vk-1"'


def ads(name):
    return {ad["ClusterId"]: ad for ad in json.loads((FIXTURES / name).read_text())}


def test_queue_states():
    queue = ads("condor_q.json")
    assert job_state(queue[101]).state == Waiting("ContainerCreating", "idle in the HTCondor queue")
    running = job_state(queue[102]).state
    assert isinstance(running, Running) and running.started_at.timestamp() == 1764070010
    held = job_state(queue[103])
    assert held.state.reason == "Held" and "Permission denied" in held.state.message
    deadline = job_state(queue[104])
    assert deadline.pod_reason == "DeadlineExceeded"
    assert isinstance(deadline.state, Terminated) and deadline.state.reason == "DeadlineExceeded"


def test_history_states_carry_real_exit_codes():
    history = ads("condor_history.json")
    ok, killed, removed, failed = (job_state(history[n]).state for n in (98, 97, 96, 95))
    assert (ok.exit_code, ok.reason) == (0, "Completed")
    assert (killed.exit_code, killed.signal, killed.reason) == (137, 9, "Error")
    assert removed.reason == "Error" and "condor_rm" in removed.message
    assert (failed.exit_code, failed.reason) == (3, "Error")


def test_unknown_status_is_waiting_not_a_crash(caplog):
    state = job_state({"ClusterId": 1, "JobStatus": 42})
    assert state.state == Waiting("Unknown", "HTCondor JobStatus 42")
    assert "unknown JobStatus" in caplog.text
