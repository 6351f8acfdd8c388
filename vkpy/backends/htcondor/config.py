"""The HTCondor backend's configuration (``backend: {kind: htcondor, ...}``): what it
adds to every batch system's `BatchConfig`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from vkpy.backends.batch.config import BatchConfig
from vkpy.backends.htcondor.commands import extra_commands
from vkpy.errors import PodRejected


class HTCondorConfig(BatchConfig):
    """Pods as HTCondor jobs, submitted over SSH to a submit node (or locally on one)."""

    kind: Literal["htcondor"] = "htcondor"
    file_transfer: Literal["shared", "transfer"] = Field(
        "shared",
        description="shared: the job runs in the pod's work directory "
        "<work_dir>/<node>/<uid>, which must be on a filesystem the execute nodes share; "
        "container status and logs are read from it live. transfer: HTCondor copies the "
        "staged files (spec/, status/, volumes/) to the job's scratch directory "
        "(transfer_input_files) and brings status/ and logs/ back when the job ends or is "
        "evicted; no shared filesystem is needed, but until then the pod shows only what "
        "condor_q says (its first container running from the job's start) and "
        "`kubectl logs` shows nothing; exit codes and logs arrive at the end.",
    )
    submit_commands: dict[str, str] = Field(
        default_factory=dict,
        description="Extra submit commands for every pod, e.g. {requirements: "
        "'(OpSysMajorVer == 9)', '+AccountingGroup': '\"group.user\"'}; pods add their "
        "own with annotations htcondor.vkpy.io/<command>. Commands vkpy sets itself "
        "(executable, output, request_*, +Vkpy*...) are refused.",
    )

    @field_validator("submit_commands")
    @classmethod
    def _commands_allowed(cls, commands: dict[str, str]) -> dict[str, str]:
        try:
            return extra_commands(commands, {})
        except PodRejected as exc:
            raise ValueError(str(exc)) from None
