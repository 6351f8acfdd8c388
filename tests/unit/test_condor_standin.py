"""The stand-in reads submit descriptions as HTCondor does (examples from its manual)."""

import pytest

from vkpy.testing.condor_standin import parse_arguments, parse_submit


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
    from vkpy.testing.condor_standin import _constraint

    argv = queue.condor_history_argv("n1", ["4.0", "9.0"])
    matches = _constraint(argv[argv.index("-constraint") + 1])
    assert matches({"VkpyNode": "n1", "ClusterId": 9})
    assert not matches({"VkpyNode": "n1", "ClusterId": 5})
    assert not matches({"VkpyNode": "n2", "ClusterId": 4})
