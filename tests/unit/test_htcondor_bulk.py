"""Many HTCondor pods in one condor_submit: the bulk script, run by a real bash against
the HTCondor stand-in (as installed on the login node), makes one cluster for pods
with the same description and one job for each pod, whatever fails or is cut where."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from vkpy.backend import Container, PodSpec, Resources
from vkpy.backends.batch import bulk
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.script import PRIVATE_MODE, Grouped, StagedFile, Submission
from vkpy.backends.htcondor import queue
from vkpy.backends.htcondor.submit import description
from vkpy.testing import condor

UIDS = [f"7a1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a{n:02d}" for n in range(4)]
NODE = "vk-c"

# In front of the stand-in's condor_submit: what the test injects into a group's submit
# (a description with more than one item), the single ones pass through.
SHIM = """#!/bin/bash
file=${@: -1}
calls=$BULK_TEST/submit-calls; echo "$*" >> "$calls"
items=$(awk '/^queue /{q=1; next} /^\\)/{q=0} q' "$file" 2>/dev/null | grep -c .)
if [ "$items" -gt 1 ]; then
  case $(cat "$BULK_TEST/inject" 2>/dev/null) in
    refuse) echo "ERROR: Failed to commit job submission into the queue." >&2; exit 1 ;;
    lose) "$REAL_SUBMIT" "$@" > /dev/null; exit 1 ;;
    cut) kill -9 0 ;;
  esac
fi
exec "$REAL_SUBMIT" "$@"
"""

COUNTED_QUERY = """#!/bin/bash
echo "$*" >> "$BULK_TEST/query-calls"
exec "${REAL_SUBMIT%/*}/condor_q" "$@"
"""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    real = condor.install(tmp_path / "shared")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "condor_submit").write_text(SHIM)
    (shim / "condor_q").write_text(COUNTED_QUERY)
    for name in ("condor_submit", "condor_q"):
        (shim / name).chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{shim}:{real}:{os.environ['PATH']}")
    monkeypatch.setenv("REAL_SUBMIT", str(real / "condor_submit"))
    monkeypatch.setenv("BULK_TEST", str(tmp_path))
    (tmp_path / "node").mkdir()
    return tmp_path


@pytest.fixture
def layout(world: Path) -> Layout:
    return Layout(str(world / "node"))


def pod(uid: str, *, cpu: int = 1000) -> PodSpec:
    container = Container("main", "img", resources=Resources(cpu_millis=cpu))
    return PodSpec(uid=uid, namespace="ns", name=f"p-{uid[-2:]}", containers=(container,))


def submission(layout: Layout, spec: PodSpec) -> Submission:
    """As the backend makes it, with a script that ends at once."""
    pod_dir = layout.pod(spec.uid)
    made = description(spec, node_name=NODE, base=layout.base)
    sub = f"{pod_dir}/job.sub"
    return Submission(
        uid=spec.uid,
        pod_dir=pod_dir,
        dirs=tuple((f"{pod_dir}{d}", 0o700) for d in ("", "/spec", "/status", "/logs")),
        files=(
            StagedFile(f"{pod_dir}/job.sh", b"exit 0\n", 0o700),
            StagedFile(sub, made.text.encode(), PRIVATE_MODE),
        ),
        command=tuple(queue.submit_argv(sub)),
        existing=tuple(queue.existing_argv(f"{pod_dir}/status/_jobid", NODE, spec.uid)),
        script="",
        group=Grouped(
            key=made.key,
            argv=queue.GROUP_SUBMIT,
            head=made.head.encode(),
            item=made.item.encode(),
            tail=made.tail.encode(),
        ),
    )


def run(world: Path, subs: list[Submission]) -> tuple[int, dict[str, bulk.Outcome]]:
    layout = Layout(str(world / "node"))
    data = bulk.archive(layout, subs, mtime=0)
    done = subprocess.run(
        bulk.argv(layout, subs, parallel=4),
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
        start_new_session=True,  # a cut kills the script's process group, not pytest
    )
    return done.returncode, bulk.parse(done.stdout.decode())


def jobs(world: Path) -> dict[str, str]:
    """Every job the stand-in's schedd holds: "<cluster>.<proc>" -> the pod's UID."""
    found = {}
    for path in (world / "home/.condor-standin/jobs").glob("*.json"):
        ad = json.loads(path.read_text())
        found[f"{ad['ClusterId']}.{ad['ProcId']}"] = ad["VkpyPodUID"]
    return found


def calls(world: Path, what: str) -> list[str]:
    recorded = world / f"{what}-calls"
    return recorded.read_text().splitlines() if recorded.exists() else []


def submit_calls(world: Path) -> list[str]:
    return calls(world, "submit")


def test_like_pods_are_one_cluster_each_pod_one_job_in_order(world, layout):
    subs = [submission(layout, pod(uid)) for uid in UIDS]
    status, outcomes = run(world, subs)
    assert status == 0
    assert [outcomes[u].kind for u in UIDS] == ["submitted"] * len(UIDS)
    assert [outcomes[u].job_id for u in UIDS] == [f"1.{n}" for n in range(len(UIDS))]
    assert len(submit_calls(world)) == 1 and calls(world, "query") == []
    assert jobs(world) == {f"1.{n}": uid for n, uid in enumerate(UIDS)}
    for n, uid in enumerate(UIDS):
        assert Path(layout.status(uid), "_jobid").read_text() == f"1.{n}\n"
    again_status, again = run(world, subs)
    assert again_status == 0 and {o.kind for o in again.values()} == {"existing"}
    assert len(submit_calls(world)) == 1


def test_unlike_pods_are_a_cluster_each_and_a_lone_pod_is_submitted_alone(world, layout):
    big = [submission(layout, pod(uid, cpu=4000)) for uid in UIDS[:2]]
    lone = submission(layout, pod(UIDS[2]))
    status, outcomes = run(world, [big[0], lone, big[1]])
    assert status == 0 and {o.kind for o in outcomes.values()} == {"submitted"}
    clusters = {outcomes[u].job_id.split(".")[0] for u in UIDS[:2]}
    assert len(clusters) == 1 and outcomes[UIDS[2]].job_id not in clusters
    assert len(jobs(world)) == 3 and len(submit_calls(world)) == 2
    assert any(call.endswith("/job.sub") for call in submit_calls(world))
    assert calls(world, "query") == []  # fresh pods: no queue asked, grouped or alone


def test_a_refused_group_is_submitted_pod_by_pod(world, layout):
    (world / "inject").write_text("refuse")
    subs = [submission(layout, pod(uid)) for uid in UIDS[:3]]
    status, outcomes = run(world, subs)
    assert status == 0 and {o.kind for o in outcomes.values()} == {"submitted"}
    assert sorted(jobs(world).values()) == sorted(UIDS[:3])
    assert len(submit_calls(world)) == 1 + 3


def test_a_group_whose_answer_is_lost_is_found_in_the_queue(world, layout):
    (world / "inject").write_text("lose")
    subs = [submission(layout, pod(uid)) for uid in UIDS[:3]]
    status, outcomes = run(world, subs)
    assert status == 0 and {o.kind for o in outcomes.values()} == {"asked"}
    assert {u: queue.parse_job_id(outcomes[u].answer.stdout.decode()) for u in UIDS[:3]} == {
        uid: f"1.{n}" for n, uid in enumerate(UIDS[:3])
    }
    assert len(jobs(world)) == 3 and len(submit_calls(world)) == 1


def test_a_cut_at_the_group_then_run_again_submits_each_pod_once(world, layout):
    (world / "inject").write_text("cut")
    subs = [submission(layout, pod(uid)) for uid in UIDS[:3]]
    status, _ = run(world, subs)
    assert status == -signal.SIGKILL and jobs(world) == {}
    (world / "inject").unlink()
    status, outcomes = run(world, subs)
    assert status == 0 and {o.kind for o in outcomes.values()} == {"submitted"}
    assert sorted(jobs(world).values()) == sorted(UIDS[:3])
    status, _ = run(world, subs)
    assert sorted(jobs(world).values()) == sorted(UIDS[:3])
