"""Property test (Hypothesis): whatever argv and environment a pod carries, the batch
script hands them to the container runtime byte for byte through a real bash run, and
no value is ever run as shell; a value no process can carry is refused with PodRejected."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_slurm_script import FAKE_RUNTIME, app, logged, pod_spec, run_job
from tests.unit.test_slurm_script import settings as script_settings
from vkpy.backends.batch.naming import Layout
from vkpy.backends.slurm.sbatch import render
from vkpy.errors import PodRejected

# Kubernetes strings are UTF-8: any code point but the surrogates. Shell syntax, quotes,
# newlines, option look-alikes and non-ASCII are drawn often.
CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
TRICKY = st.sampled_from(
    [
        "$(touch PWNED)",
        "`touch PWNED`",
        "; touch PWNED",
        "'",
        '"',
        "\\",
        "\n",
        "\r",
        "-",
        "--env=X=1",
        "%s",
        "$HOME",
        "${IFS}",
        "*",
        "~",
        "!",
        "é",
        "日本",
        "\x7f",
        " ",
        "",
    ]
)
VALUES = st.lists(st.one_of(TRICKY, st.text(CHARACTERS, max_size=12)), max_size=4).map("".join)
NAMES = st.from_regex(r"V[0-9]{1,3}", fullmatch=True)
RUNS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@RUNS
@given(
    args=st.lists(VALUES, max_size=6),
    env=st.dictionaries(NAMES, VALUES, max_size=6),
    kind=st.sampled_from(["podman", "apptainer"]),
)
def test_argv_and_env_reach_the_runtime_byte_for_byte(
    args: list[str], env: dict[str, str], kind: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        runtime = root / "fake-runtime"
        runtime.write_text(FAKE_RUNTIME)
        runtime.chmod(0o755)
        pod = pod_spec(app("main", command=("prog",), args=tuple(args), env=env))
        submission = render(
            pod, layout=Layout(str(root / "base")), settings=script_settings(runtime, kind), now=0
        )
        assert run_job(submission) == 0
        seen_args, seen_env = logged(Path(submission.pod_dir), "main")
        assert seen_args[len(seen_args) - len(args) :] == [a.encode() for a in args]
        if kind == "podman":
            assert sorted(seen_env) == sorted(f"{k}={v}".encode() for k, v in env.items())
        assert not list(root.rglob("PWNED")) and not Path("PWNED").exists()


@settings(max_examples=100, deadline=None)
@given(
    before=st.text(CHARACTERS, max_size=5),
    after=st.text(CHARACTERS, max_size=5),
    where=st.sampled_from(["arg", "env"]),
)
def test_a_nul_is_refused_never_a_crash(before: str, after: str, where: str) -> None:
    value = f"{before}\0{after}"
    container = (
        app("main", command=("prog",), args=(value,))
        if where == "arg"
        else app("main", command=("prog",), env={"V1": value})
    )
    with pytest.raises(PodRejected, match="NUL"):
        render(
            pod_spec(container),
            layout=Layout("/w/node-1"),
            settings=script_settings(Path("/bin/true")),
            now=0,
        )
