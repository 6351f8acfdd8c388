"""Submit descriptions and ClassAd states of the HTCondor backend; every generated
description is parsed by HTCondor's own parser (htcondor2.Submit, no pool needed)."""

import json
from pathlib import Path

import htcondor2
import pytest

from tests.unit.condor_parse import expanded
from vkpy.backend import Container, PodSpec, Resources
from vkpy.backends.htcondor.state import by_pod, job_state
from vkpy.backends.htcondor.submit import (
    description,
    node_constraint,
    pod_resources,
    submit_description,
)
from vkpy.backends.slurm.state import Phase
from vkpy.errors import PodRejected
from vkpy.testing import condor_syntax

FIXTURES = Path(__file__).parent.parent / "fixtures" / "htcondor"


def pod(**kwargs):
    defaults = dict(
        uid="uid-1",
        namespace="ns",
        name="weird",
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
    return expanded(text)


def describe(spec, **kwargs):
    return submit_description(spec, node_name=kwargs.pop("node_name", "n"), base="/w", **kwargs)


def test_description_parses_with_htcondor_and_carries_the_pod():
    text = submit_description(
        pod(active_deadline_seconds=600),
        node_name="vk-1",
        base="/home/u/vkpy/vk-1",
        kill_wait_seconds=20,
    )
    submit = parse(text)
    assert (submit["executable"], submit["arguments"]) == ("/bin/bash", "job.sh")
    assert submit["initialdir"] == "/home/u/vkpy/vk-1/uid-1"
    assert (submit["output"], submit["error"]) == ("logs/_job.out", "logs/_job.err")
    assert submit["request_cpus"] == "4"  # the init container needs more than both apps
    assert submit["request_memory"] == "384MB"
    assert submit["request_gpus"] == "1"
    assert submit["job_max_vacate_time"] == "20"
    assert submit["allowed_job_duration"] == "630"  # the script's deadline comes first
    assert submit["MY.VkpyPodUID"] == '"uid-1"'
    assert submit["MY.VkpyNode"] == '"vk-1"'
    assert submit["MY.VkpyPodName"] == '"weird"'
    assert submit["MY.VkpyPodNamespace"] == '"ns"'


@pytest.mark.parametrize("field", ["name", "namespace", "uid"])
def test_a_value_the_queue_statement_would_split_is_refused(field):
    with pytest.raises(PodRejected, match="not a Kubernetes name"):
        describe(pod(**{field: 'we"ird, x'}))


def test_like_pods_share_a_head_and_differ_in_their_item():
    one, other = (
        description(pod(uid=u, name=n), node_name="n", base="/w")
        for u, n in (("uid-1", "a"), ("uid-2", "b"))
    )
    assert one.key == other.key and one.head == other.head
    assert (one.item, other.item) == ("uid-1 ns a\n", "uid-2 ns b\n")
    bigger = description(pod(uid="uid-3", init_containers=()), node_name="n", base="/w")
    assert bigger.key != one.key
    # Both items in one description: two jobs, each with its own directory and UID.
    jobs = list(htcondor2.Submit(one.head + one.item + other.item + one.tail).itemdata())
    assert [j["pod_uid"] for j in jobs] == ["uid-1", "uid-2"]


def test_extra_commands_from_config_and_annotations():
    annotated = pod(
        annotations={
            "htcondor.vkpy.io/+AccountingGroup": '"physics.alice"',
            "htcondor.vkpy.io/requirements": "(OpSysMajorVer == 9)",
            "other.io/ignored": "x",
        }
    )
    submit = parse(
        describe(annotated, config_extra={"requirements": "True", "+ProjectName": '"x"'})
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
        describe(bad)


def test_multiline_values_are_refused():
    bad = pod(annotations={"htcondor.vkpy.io/requirements": "True\nexecutable = /bin/evil"})
    with pytest.raises(PodRejected, match="spans lines"):
        describe(bad)


def test_pod_resources_without_requests():
    plain = pod(containers=(Container("a", "img"),), init_containers=())
    assert pod_resources(plain) == Resources()
    assert parse(describe(plain))["request_cpus"] == "1"


def test_node_constraint_quotes_the_name():
    assert node_constraint("vk-1") == 'VkpyNode == "vk-1"'


def ads(name):
    return {ad["ClusterId"]: ad for ad in json.loads((FIXTURES / name).read_text())}


def test_queue_states():
    queue = ads("condor_q.json")
    idle = job_state(queue[101])
    assert (idle.phase, idle.message, idle.job_id) == (
        Phase.WAITING,
        "HTCondor job 101.0 is idle",
        "101.0",
    )
    assert job_state(queue[102]).phase is Phase.RUNNING
    held = job_state(queue[103])
    assert held.phase is Phase.WAITING and "is held:" in held.message
    assert "Permission denied" in held.message
    deadline = job_state(queue[104])
    assert deadline.phase is Phase.TERMINATED and deadline.ending is not None
    assert deadline.ending.pod_reason == deadline.ending.container_reason == "DeadlineExceeded"


def test_history_states_carry_real_exit_codes():
    history = ads("condor_history.json")
    ok, killed, removed, failed = (job_state(history[n]) for n in (98, 97, 96, 95))
    assert all(s.terminal for s in (ok, killed, removed, failed))
    assert (ok.exit_code, ok.signal, ok.ending) == (0, None, None)
    assert (killed.exit_code, killed.signal) == (137, 9)
    assert removed.ending is not None and "condor_rm" in removed.ending.message
    assert removed.ending.pod_reason == ""
    assert (failed.exit_code, failed.ending) == (3, None)


def test_ads_are_grouped_by_pod_newest_first():
    both = json.loads((FIXTURES / "condor_q.json").read_text())
    older = {**both[0], "ClusterId": 7}
    grouped = by_pod([older, *both, {"ClusterId": 1, "JobStatus": 1}])
    assert [a["ClusterId"] for a in grouped["11111111-aaaa"]] == [101, 7]
    assert len(grouped) == 4  # the ad without a pod UID is not the node's


def test_unknown_status_is_waiting_not_a_crash(caplog):
    state = job_state({"ClusterId": 1, "JobStatus": 42})
    assert (state.phase, state.message) == (Phase.WAITING, "HTCondor JobStatus 42")
    assert "unknown JobStatus" in caplog.text


def test_an_annotation_reaches_the_job_unexpanded():
    value = '"$(pod_uid) $ENV(HOME) $$(Memory)"'
    annotated = pod(annotations={"htcondor.vkpy.io/+Note": value})
    assert expanded(describe(annotated))["MY.Note"] == value
    assert condor_syntax.expand("$(DOLLAR)(x) $(a) $$(a)", {"a": "$(b)"}) == "$(x) $(b) $$(a)"
