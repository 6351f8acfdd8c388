"""The stand-in reads submit descriptions as HTCondor does (examples from its manual)."""

import json
import time

import pytest

from vkpy.testing.condor_syntax import parse_arguments, parse_submit


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"3 simple arguments"', ["3", "simple", "arguments"]),
        ("\"one 'two with spaces' 3\"", ["one", "two with spaces", "3"]),
        (
            "\"one \"\"two\"\" 'spacey ''quoted'' argument'\"",
            ["one", '"two"', "spacey 'quoted' argument"],
        ),
        ("\"-c 'echo $(id); `x`; a|b&c'\"", ["-c", "echo $(id); `x`; a|b&c"]),
        ("\"''\"", [""]),
        ("old style words", ["old", "style", "words"]),
    ],
)
def test_arguments_follow_the_new_syntax(value, words):
    assert parse_arguments(value) == words


def test_submit_description_commands_and_custom_attributes():
    commands, custom = parse_submit(
        "# a job\nExecutable = /bin/sh\nrequest_memory = 64MB\n"
        '+VkpyPodUID = "abc"\nMY.VkpyNode = "n1"\nqueue\nignored = after queue\n'
    )
    assert commands == {"executable": "/bin/sh", "request_memory": "64MB"}
    assert custom == {"VkpyPodUID": '"abc"', "VkpyNode": '"n1"'}


def test_constraints_the_backend_sends_select_as_htcondor_would():
    from vkpy.backends.htcondor import queue
    from vkpy.testing.condor_syntax import constraint

    argv = queue.condor_history_argv("n1", ["4.0", "9.2"])
    matches = constraint(argv[argv.index("-constraint") + 1])
    assert matches({"VkpyNode": "n1", "ClusterId": 9, "ProcId": 2})
    assert not matches({"VkpyNode": "n1", "ClusterId": 9, "ProcId": 0})
    assert not matches({"VkpyNode": "n1", "ClusterId": 5, "ProcId": 0})
    assert not matches({"VkpyNode": "n2", "ClusterId": 4, "ProcId": 0})


def test_the_installed_stand_in_runs_without_vkpy(tmp_path):
    """As on the login node: the system's python3, without vkpy, finds its parser beside it."""
    import subprocess

    from vkpy.testing import condor

    bin_dir = condor.install(tmp_path / "shared")
    done = subprocess.run(
        [condor.INTERPRETER, "-s", "-E", str(bin_dir / "condor_q"), "-json"],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"ImportError" not in done.stderr


def test_a_removal_while_the_runner_starts_the_job_is_not_lost(tmp_path, monkeypatch):
    """condor_rm lands between the runner's read of the ad and its write of RUNNING (as
    in a soak): the removal stands, the job is vacated and leaves the queue."""
    import subprocess

    from vkpy.testing import condor_standin as standin

    monkeypatch.setattr(standin, "STATE", tmp_path / "state")
    monkeypatch.setattr(standin.time, "sleep", lambda seconds: None)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(argv, **kwargs):  # type: ignore[no-untyped-def]
        if argv[-1] == "__negotiate":  # condor_submit's pool: the job is run here, below
            return None
        process = real_popen(argv, **kwargs)
        started.append(process)
        assert standin.remove(["1"]) == 0  # the removal, right now
        return process

    monkeypatch.setattr(standin.subprocess, "Popen", popen)
    description = "executable = /bin/sleep\narguments = 30\nqueue\n"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(description))
    assert standin.submit(["-terse"]) == 0
    assert standin.run_job("1.0") == 0
    (process,) = started
    assert process.poll() is not None, "the job was not vacated"
    ad = standin._load("1.0")
    assert ad["JobStatus"] == standin.REMOVED and ad["StandinExited"] is True
    assert not standin._in_queue(ad)


def test_the_pool_runs_at_most_its_slots_and_every_job_in_the_end(tmp_path, monkeypatch):
    """Jobs beyond the pool's slots wait, idle, and start as slots free, in order."""
    import subprocess

    from vkpy.testing import condor

    bin_dir = condor.install(tmp_path / "shared")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "work").mkdir()
    jobs = 40
    description = (
        "executable = /bin/sh\narguments = \"-c 'sleep 1; echo $(ProcId)'\"\n"
        "output = out.$(ProcId)\nerror = err.$(ProcId)\nlog = events\nqueue 40\n"
    )
    done = subprocess.run(
        [str(bin_dir / "condor_submit"), "-terse", "-"],
        input=description.encode(),
        cwd=tmp_path / "work",
        capture_output=True,
        check=True,
    )
    assert done.stdout.decode().split() == ["1.0", "-", f"1.{jobs - 1}"]
    state = tmp_path / ".condor-standin/jobs"
    busiest = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ads = [json.loads(p.read_text()) for p in state.glob("*.json")]
        busiest = max(busiest, sum(ad["JobStatus"] == 2 for ad in ads))
        if all(ad["JobStatus"] == 4 for ad in ads):
            break
        time.sleep(0.1)
    assert all(ad["JobStatus"] == 4 for ad in ads), "not every job ran"
    assert 0 < busiest <= 32
    assert [(tmp_path / f"work/out.{n}").read_text() for n in range(jobs)] == [
        f"{n}\n" for n in range(jobs)
    ]
    events = (tmp_path / "work/events").read_text()
    assert events.count("\n005 (001.") == jobs and events.startswith("000 (001.000.000) ")
