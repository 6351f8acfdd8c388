"""The bulk submission script, run by a real bash against a stand-in sbatch and squeue
that record every call: each pod gets one job, whatever was cut where."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from vkpy.backends.batch import bulk
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.script import StagedFile, Submission
from vkpy.backends.slurm.sbatch import EXISTING

UIDS = [f"3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a{n:02d}" for n in range(5)]

# sbatch: one job per call, recorded with its name; a name with "refuse" is refused.
SBATCH = """#!/bin/bash
name=""; for a in "$@"; do case $a in --job-name=*) name=${a#--job-name=};; esac; done
printf '%s\\n' "$@" > "$BULK_TEST/args.$name"
case $name in *refuse*) echo "sbatch: error: invalid partition specified: nope" >&2; exit 1;; esac
exec 9>"$BULK_TEST/lock"; flock 9
n=$(( $(cat "$BULK_TEST/next" 2>/dev/null || echo 100) + 1 )); echo "$n" > "$BULK_TEST/next"
printf '%s %s\\n' "$n" "$name" >> "$BULK_TEST/queue"
[ -e "$BULK_TEST/hang.$name" ] && sleep 60
printf '%s;cluster\\n' "$n"
"""
# squeue --name=X --format=%i: the queue's jobs of that name; fails when told to.
SQUEUE = """#!/bin/bash
if [ -e "$BULK_TEST/squeue-down" ]; then
  echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1
fi
echo called >> "$BULK_TEST/squeue-calls"
for a in "$@"; do case $a in --name=*) name=${a#--name=};; esac; done
awk -v n="$name" '$2 == n { print $1 }' "$BULK_TEST/queue" 2>/dev/null
exit 0
"""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, text in (("sbatch", SBATCH), ("squeue", SQUEUE)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.setenv("BULK_TEST", str(tmp_path))
    (tmp_path / "node").mkdir()
    return tmp_path


def submission(layout: Layout, uid: str, *, comment: str = "c") -> Submission:
    pod_dir = layout.pod(uid)
    name = f"vkpy_n_{uid}"
    return Submission(
        uid=uid,
        pod_dir=pod_dir,
        dirs=tuple((f"{pod_dir}{sub}", 0o700) for sub in ("", "/spec", "/status", "/logs")),
        files=(
            StagedFile(f"{pod_dir}/job.sh", b"#!/bin/sh\n", 0o700),
            StagedFile(f"{pod_dir}/spec/secret", b"s3cret", 0o600),
        ),
        command=("sbatch", "--parsable", f"--job-name={name}", f"--comment={comment}"),
        existing=("sh", "-c", EXISTING, "sh", f"{pod_dir}/status/_jobid", name),
        script="",
    )


def run(world: Path, subs: list[Submission], *, parallel: int = 4) -> dict[str, bulk.Outcome]:
    layout = Layout(str(world / "node"))
    data = bulk.archive(layout, subs, mtime=0)
    argv = bulk.argv(layout, subs, parallel=parallel)
    done = subprocess.run(argv, input=data, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return bulk.parse(done.stdout.decode())


def submitted(world: Path) -> list[str]:
    """Every job sbatch made, as "<id> <name>"."""
    queue = world / "queue"
    return queue.read_text().splitlines() if queue.exists() else []


def squeue_calls(world: Path) -> int:
    calls = world / "squeue-calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@pytest.fixture
def layout(world: Path) -> Layout:
    return Layout(str(world / "node"))


def test_each_pod_gets_its_own_job_in_one_command_with_no_queue_query(world, layout):
    subs = [submission(layout, uid) for uid in UIDS]
    outcomes = run(world, subs)
    assert {o.kind for o in outcomes.values()} == {"submitted"}
    ids = {uid: o.job_id for uid, o in outcomes.items()}
    assert sorted(ids) == sorted(UIDS) and len(set(ids.values())) == len(UIDS)
    assert len(submitted(world)) == len(UIDS) and squeue_calls(world) == 0
    for uid in UIDS:
        status = Path(layout.status(uid))
        assert (status / "_jobid").read_text() == f"{ids[uid]}\n"
        assert stat.S_IMODE((Path(layout.pod(uid)) / "spec/secret").stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(layout.pod(uid)).stat().st_mode) == 0o700
    assert not list((world / "node").glob(".incoming.*"))  # the staging area is gone


def test_running_it_again_submits_nothing(world, layout):
    subs = [submission(layout, uid) for uid in UIDS[:3]]
    first = run(world, subs)
    again = run(world, subs)
    assert {o.kind for o in again.values()} == {"existing"}
    assert {u: o.job_id for u, o in again.items()} == {u: o.job_id for u, o in first.items()}
    assert len(submitted(world)) == 3 and squeue_calls(world) == 0


def test_an_answer_lost_after_sbatch_is_found_in_the_queue(world, layout):
    """The cut between sbatch and the job id's record: only the marker is left."""
    sub = submission(layout, UIDS[0])
    first = run(world, [sub])[UIDS[0]]
    (Path(layout.status(UIDS[0])) / "_jobid").unlink()
    again = run(world, [sub])[UIDS[0]]
    assert again.kind == "asked" and again.answer is not None
    assert again.answer.text.split() == [first.job_id]
    assert len(submitted(world)) == 1 and squeue_calls(world) == 1


def test_a_queue_that_cannot_answer_leaves_the_pod_unsure_and_submits_nothing(world, layout):
    sub = submission(layout, UIDS[0])
    run(world, [sub])
    (Path(layout.status(UIDS[0])) / "_jobid").unlink()
    (world / "squeue-down").touch()
    assert run(world, [sub])[UIDS[0]].kind == "unsure"
    assert len(submitted(world)) == 1


def test_a_job_that_left_the_queue_is_found_by_its_begin_record(world, layout):
    sub = submission(layout, UIDS[0])
    run(world, [sub])
    status = Path(layout.status(UIDS[0]))
    (status / "_jobid").unlink()
    (world / "queue").write_text("")  # aged out of squeue
    (status / "_job").write_text("begin 100 host 777 -\nend 0 101\n")
    again = run(world, [sub])[UIDS[0]]
    assert (again.kind, again.job_id) == ("existing", "777")
    assert (status / "_jobid").read_text() == "777\n" and len(submitted(world)) == 0


def test_a_marker_the_queue_knows_nothing_of_submits_again(world, layout):
    """sbatch never ran (the marker was written, then the cut): the queue says none."""
    sub = submission(layout, UIDS[0])
    run(world, [sub])
    (Path(layout.status(UIDS[0])) / "_jobid").unlink()
    (world / "queue").write_text("")
    assert run(world, [sub])[UIDS[0]].kind == "submitted"


def test_a_staging_cut_before_the_marker_is_staged_again(world, layout):
    sub = submission(layout, UIDS[0])
    half = Path(layout.pod(UIDS[0]))
    (half / "status").mkdir(parents=True)
    (half / "job.sh").write_text("partial")
    outcome = run(world, [sub])[UIDS[0]]
    assert outcome.kind == "submitted" and (half / "job.sh").read_text() == "#!/bin/sh\n"


def test_a_refused_pod_says_why_and_the_others_are_submitted(world, layout):
    refused = UIDS[1].replace("3f1c", "0000")
    subs = [submission(layout, UIDS[0]), submission(layout, refused)]
    subs[1] = Submission(
        **{**subs[1].__dict__, "command": (*subs[1].command[:2], f"--job-name=refuse-{refused}")}
    )
    outcomes = run(world, subs)
    assert outcomes[UIDS[0]].kind == "submitted"
    bad = outcomes[refused]
    assert bad.kind == "refused" and bad.answer is not None and bad.answer.status == 1
    assert b"invalid partition" in bad.answer.stderr


def test_a_command_cut_midway_then_run_again_submits_each_pod_once(world, layout):
    """Killed while the third pod's sbatch hangs: the retry finishes the rest."""
    subs = [submission(layout, uid) for uid in UIDS]
    (world / f"hang.vkpy_n_{UIDS[2]}").touch()
    data = bulk.archive(layout, subs, mtime=0)
    argv = bulk.argv(layout, subs, parallel=1)
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(data)
    process.stdin.close()
    for _ in range(2):  # the first two answers arrive, then the third hangs
        assert process.stdout.readline().startswith(b"submitted ")
    deadline = 100
    while len(submitted(world)) < 3 and deadline:
        deadline -= 1
        subprocess.run(["sleep", "0.1"], check=True)
    os.killpg(process.pid, 9)
    process.wait()
    (world / f"hang.vkpy_n_{UIDS[2]}").unlink()
    outcomes = run(world, subs)
    kinds = [outcomes[uid].kind for uid in UIDS]
    assert kinds == ["existing", "existing", "asked", "submitted", "submitted"]
    names = [line.split()[1] for line in submitted(world)]
    assert sorted(names) == sorted(f"vkpy_n_{uid}" for uid in UIDS)  # once each


def test_pod_data_reaches_sbatch_as_one_word_never_as_shell(world, layout):
    hostile = "a'b\"c $(touch pwned) `id` ; | & \\ ünï\nnext"
    run(world, [submission(layout, UIDS[0], comment=hostile)])
    args = (world / f"args.vkpy_n_{UIDS[0]}").read_text()
    assert f"--comment={hostile}\n" in args
    assert not (world / "pwned").exists() and not (Path(layout.pod(UIDS[0])) / "pwned").exists()


def test_parse_ignores_what_is_not_an_answer():
    text = f"noise\nsubmitted {UIDS[0]} 12\nsubmitted Not_A_Uid 13\nexisting {UIDS[1]} \n"
    assert bulk.parse(text) == {UIDS[0]: bulk.Outcome("submitted", job_id="12")}
