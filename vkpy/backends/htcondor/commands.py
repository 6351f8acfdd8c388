"""Which extra submit commands a pod or the configuration may add. Pure.

Its own module so that the configuration (`vkpy.backends.htcondor.config`) checks
``submit_commands`` without loading the rest of the backend.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vkpy.errors import PodRejected

ANNOTATION_PREFIX = "htcondor.vkpy.io/"
# Commands vkpy sets itself: changing them would lose the job, its output or its status.
RESERVED = frozenset(
    {
        "executable",
        "arguments",
        "args",
        "output",
        "error",
        "log",
        "initialdir",
        "iwd",
        "queue",
        "universe",
        "transfer_executable",
        "allowed_job_duration",
        "request_cpus",
        "request_memory",
        "request_gpus",
        "getenv",
        "environment",
        "env",
        "kill_sig",
        "job_max_vacate_time",
        "should_transfer_files",
        "transfer_input_files",
        "transfer_output_files",
        "transfer_output_remaps",
        "when_to_transfer_output",
    }
)
_COMMAND = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
_LONE_DOLLAR = re.compile(r"\$\$|\$")


def _literal(match: re.Match[str]) -> str:
    return match.group(0) if match.group(0) == "$$" else "$(DOLLAR)"


def extra_commands(
    config_extra: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, str]:
    """Config commands, then the pod's annotations over them; reserved ones refused.

    condor_submit expands macros in every value: a pod's lone ``$`` is written as
    ``$(DOLLAR)`` so that its annotation reaches the job as written, and cannot read
    the agent's environment (``$ENV(...)``) or the description's own variables.
    ``$$(...)`` stays: the schedd expands it from the matched machine, for the job.
    """
    chosen = dict(config_extra)
    for key, value in annotations.items():
        if key.startswith(ANNOTATION_PREFIX):
            chosen[key.removeprefix(ANNOTATION_PREFIX)] = _LONE_DOLLAR.sub(_literal, value)
    for command, value in chosen.items():
        name = command.lstrip("+")
        if not _COMMAND.match(name):
            raise PodRejected(
                f"HTCondor submit command {command!r} is not a valid name",
                reason="InvalidSubmitCommand",
            )
        if name.lower() in RESERVED or name.lower().startswith(("vkpy", "my.vkpy")):
            raise PodRejected(
                f"HTCondor submit command {command!r} is set by vkpy and cannot be overridden",
                reason="InvalidSubmitCommand",
            )
        if "\n" in value or "\r" in value:
            raise PodRejected(
                f"HTCondor submit command {command!r}: value spans lines",
                reason="InvalidSubmitCommand",
            )
    return chosen
