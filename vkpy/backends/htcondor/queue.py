"""condor_submit, condor_q, condor_history and condor_rm: their argv and output. Pure.

Status is read with one ``condor_q -json`` for all the node's jobs (the constraint on
the node attribute) and, when jobs have left the queue unseen, one ``condor_history
-json`` for just those jobs, asking only for the attributes `state.ATTRIBUTES` names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from vkpy.backends.htcondor.state import ATTRIBUTES
from vkpy.backends.htcondor.submit import node_constraint, pod_constraint
from vkpy.errors import BackendUnavailable

_JOB_ID = re.compile(r"^\d+\.\d+$")

# The job id a pod has already: from its work directory, or from the queue.
EXISTING = (
    'if [ -s "$1" ]; then cat "$1"; '
    'else condor_q -json -constraint "$2" -attributes ClusterId,ProcId; fi'
)


# A shell test, run with the job id in "$job", that succeeds while the job is queued.
QUEUED_TEST = '[ -n "$(condor_q -json "$job" -attributes ClusterId 2>/dev/null)" ]'


# Many pods' description, whose path follows (`bulk`): -terse prints "<first> - <last>".
GROUP_SUBMIT = ("condor_submit", "-terse")


def submit_argv(description: str) -> list[str]:
    """condor_submit of ``description``; -terse prints "<first job> - <last job>"."""
    return ["condor_submit", "-terse", description]


def existing_argv(job_id_file: str, node: str, uid: str) -> list[str]:
    return ["sh", "-c", EXISTING, "sh", job_id_file, pod_constraint(node, uid)]


def parse_job_id(text: str) -> str | None:
    """The job id in condor_submit -terse's answer, or in EXISTING's."""
    words = text.split()
    if words and _JOB_ID.match(words[-1]):
        return words[-1]
    if words and _JOB_ID.match(words[0]):
        return words[0]
    if text.lstrip().startswith("["):
        ads = parse_ads(text)
        if ads:
            newest = max(ads, key=lambda a: (a.get("ClusterId", 0), a.get("ProcId", 0)))
            return f"{newest.get('ClusterId')}.{newest.get('ProcId', 0)}"
    return None


def condor_q_argv(node: str, *, uid: str | None = None) -> list[str]:
    constraint = node_constraint(node) if uid is None else pod_constraint(node, uid)
    return ["condor_q", "-json", "-constraint", constraint, "-attributes", ",".join(ATTRIBUTES)]


def condor_history_argv(node: str, job_ids: Sequence[str]) -> list[str]:
    """The history of these jobs of the node only: condor_history reads the schedd's
    history file backwards, and ``-limit`` lets it stop once every job is found rather
    than read a long history to its start. Jobs are named "<cluster>.<proc>" exactly:
    the other jobs of their clusters (other pods) would use up the limit."""
    # A job id that is not one (a damaged job id file) has no history.
    jobs = sorted({job for job in job_ids if _JOB_ID.match(job)})
    named = ", ".join(f'"{job}"' for job in jobs)
    constraint = f'{node_constraint(node)} && member(strcat(ClusterId, ".", ProcId), {{{named}}})'
    return [
        "condor_history",
        "-json",
        "-limit",
        str(len(jobs)),
        "-constraint",
        constraint,
        "-attributes",
        ",".join(ATTRIBUTES),
    ]


def condor_rm_argv(node: str, uid: str) -> list[str]:
    return ["condor_rm", "-constraint", pod_constraint(node, uid)]


def parse_ads(text: str) -> list[dict[str, Any]]:
    """HTCondor's ``-json`` output: a JSON array of ClassAds; nothing at all when no job
    matched."""
    if not text.strip():
        return []
    try:
        ads = json.loads(text)
    except ValueError as exc:
        raise BackendUnavailable(f"HTCondor printed no JSON ClassAds: {text[:200]!r}") from exc
    if not isinstance(ads, list):
        raise BackendUnavailable(f"HTCondor printed no list of ClassAds: {text[:200]!r}")
    return [ad for ad in ads if isinstance(ad, dict)]
