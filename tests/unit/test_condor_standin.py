"""The stand-in reads submit descriptions as HTCondor does (examples from its manual)."""

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

    argv = queue.condor_history_argv("n1", ["4.0", "9.0"])
    matches = constraint(argv[argv.index("-constraint") + 1])
    assert matches({"VkpyNode": "n1", "ClusterId": 9})
    assert not matches({"VkpyNode": "n1", "ClusterId": 5})
    assert not matches({"VkpyNode": "n2", "ClusterId": 4})


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
