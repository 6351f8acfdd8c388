"""Property tests (Hypothesis): every parser of what a batch system, a login node, a
client or an admin hands vkpy returns a value or vkpy's typed error on any input, never
an unhandled exception."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vkpy import config
from vkpy.backends.batch import bulk, reach, records, tail
from vkpy.backends.batch.naming import Layout
from vkpy.backends.htcondor import queue as condor_queue
from vkpy.backends.htcondor.state import by_pod, job_state, queued_job_state
from vkpy.backends.slurm import queue as slurm_queue
from vkpy.backends.slurm import state as slurm_state
from vkpy.errors import ConfigError, VkpyError
from vkpy.kube import times
from vkpy.kubeletapi.logquery import parse_log_query
from vkpy.quantity import parse_quantity

EXAMPLES = settings(max_examples=300, deadline=None)
LAYOUT = Layout("/w/node-1")
UID = "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b"

# Lines shaped like the real ones, pieces of them, and noise: a parser meets all three.
WORDS = st.sampled_from(
    [
        UID,
        "|",
        "RUNNING",
        "TIMEOUT",
        "CANCELLED by 0",
        "PENDING",
        "COMPLETED",
        "0:9",
        "begin",
        "end",
        "stop",
        "start",
        "exit",
        "wait",
        "signal",
        "deadline",
        "@jobid",
        "@meta",
        "@run",
        "@queue",
        "gone:",
        "submitted",
        "existing",
        "failed",
        "vkpy_node-1_",
        f"{LAYOUT.base}/{UID}/status/main:",
        f"{LAYOUT.base}/{UID}/status/_job:",
        "1700000000",
        "-1",
        "99999999999999999999",
        "1e400",
        "nan",
        "(null)",
        "N/A",
        "4+",
        " ",
        "\t",
        "\x00",
    ]
)
LINES = st.lists(
    st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=8).map(" ".join), max_size=12
).map("\n".join)
TEXT = st.one_of(st.text(), LINES)


def tolerant(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """``call`` returns, or raises vkpy's typed error: nothing else."""
    with contextlib.suppress(VkpyError):
        call(*args, **kwargs)


@EXAMPLES
@given(TEXT)
def test_slurm_output_parsers(text: str) -> None:
    tolerant(slurm_queue.parse_squeue, text, "node-1")
    tolerant(slurm_queue.parse_sacct, text)
    tolerant(slurm_queue.parse_sinfo, text, pods=110)
    tolerant(slurm_state.parse, text)
    tolerant(slurm_state.exit_code, text)


@EXAMPLES
@given(TEXT)
@example("²")  # found: str.isdigit() took it for a number that int() then refused
def test_status_file_and_login_node_answers(text: str) -> None:
    files = records.parse_status_lines(text, LAYOUT)
    for found in files.values():
        records.job_events(found.job)
        records.ended_well(found)
        for lines in found.containers.values():
            records.history(lines)
    tolerant(tail.parse, text, LAYOUT)
    tolerant(bulk.parse, text)
    tolerant(reach.parse_probe, text)
    tolerant(condor_queue.parse_job_id, text)
    tolerant(condor_queue.condor_history_argv, "node-1", text.split())


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
AD_KEYS = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    "JobCurrentStartDate",
    "EnteredCurrentStatus",
    "HoldReason",
    "HoldReasonCode",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "RemoveReason",
    "VkpyPodUID",
    "VkpyNode",
    "LastJobStatus",
    "CompletionDate",
]
AD = st.builds(
    lambda ad, status: {**ad, "JobStatus": status},
    st.fixed_dictionaries({}, optional=dict.fromkeys(AD_KEYS, JSON_SCALARS)),
    st.one_of(st.integers(0, 8), JSON_SCALARS),  # real states mostly, so their paths run
)
ADS = st.lists(AD, max_size=4)


@EXAMPLES
@given(st.one_of(ADS.map(json.dumps), st.text()))
# Found: a start date that was no number crashed the listing.
@example('[{"JobStatus": 2, "JobCurrentStartDate": ":"}]')
@example('[{"JobStatus": 4, "ExitBySignal": true, "ExitSignal": "x"}]')
@example('[{"VkpyPodUID": "u", "ClusterId": null}, {"VkpyPodUID": "u"}]')  # found: unsortable
def test_condor_q_json(text: str) -> None:
    try:
        ads = condor_queue.parse_ads(text)
    except VkpyError:
        return
    for ad in ads:
        tolerant(job_state, ad)
        tolerant(queued_job_state, ad)
    tolerant(by_pod, ads)


@EXAMPLES
@given(st.one_of(st.text(), st.from_regex(r"[+-]?[0-9.]{0,6}([eE][+-]?[0-9]{1,4})?[a-zA-Z]{0,2}")))
def test_quantities(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_quantity(text)


@EXAMPLES
@given(
    st.one_of(
        st.text(), st.from_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,12})?(Z|[+-]\d\d:\d\d)?")
    )
)
def test_times(text: str) -> None:
    with contextlib.suppress(ValueError):
        times.parse(text)


QUERY_NAMES = st.sampled_from(
    [
        "tailLines",
        "tail",
        "limitBytes",
        "sinceSeconds",
        "sinceTime",
        "timestamps",
        "follow",
        "previous",
        "stream",
        "container",
        "x",
    ]
)
QUERY_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["-1", "0", "1", "all", "true", "false", "9" * 30, "2026-12-01T00:00:00Z"]),
)


@EXAMPLES
@given(st.dictionaries(QUERY_NAMES, st.lists(QUERY_VALUES, max_size=3), max_size=6))
def test_log_queries(query: dict[str, list[str]]) -> None:
    try:
        parse_log_query(query, now=datetime(2026, 12, 1, tzinfo=UTC))
    except web.HTTPException as exc:
        assert exc.status in (400, 422)


SETTING_NAMES = st.sampled_from(
    [
        "node",
        "backend",
        "kubelet_api",
        "kind",
        "name",
        "work_dir",
        "ssh",
        "host",
        "port",
        "poll_seconds",
        "status_read_seconds",
        "min_queue_interval_seconds",
        "capacity",
        "cpu",
        "memory",
        "pods",
        "taints",
        "labels",
        "accounting",
        "log_format",
        "x",
    ]
)
DOCUMENTS = st.recursive(
    JSON_SCALARS, lambda inner: st.dictionaries(SETTING_NAMES, inner, max_size=5), max_leaves=12
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(DOCUMENTS.map(yaml.safe_dump), st.text()))
def test_config_documents(document: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "vkpy.yaml"
        path.write_text(document)
        try:
            config.load(path)
        except ConfigError as exc:
            assert str(exc).startswith(f"{path}: ")
