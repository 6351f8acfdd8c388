"""The Slurm backend's configuration (``backend: {kind: slurm, ...}``): what it adds to
every batch system's `BatchConfig`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vkpy.backends.batch.config import BatchConfig


class SlurmConfig(BatchConfig):
    """Pods as Slurm jobs, submitted over SSH to a login node (or locally on one)."""

    kind: Literal["slurm"] = "slurm"
    partition: str | None = Field(None, description="Slurm partition (--partition).")
    account: str | None = Field(None, description="Slurm account (--account).")
    qos: str | None = Field(None, description="Slurm QOS (--qos).")
    sbatch_flags: list[str] = Field(
        default_factory=list,
        description="Extra sbatch flags for every pod, each '--flag=value' (checked like "
        "the slurm.vkpy.io/flags annotation).",
    )
    accounting: Literal["sacct", "jobcomp", "none"] = Field(
        "sacct",
        description="Where jobs that left the queue are looked up: sacct (slurmdbd), "
        "sacct -c (the jobcomp/filetxt file, for clusters without slurmdbd), or nowhere "
        "(the exit codes the job script records are all there is).",
    )
    federation: bool = Field(
        False,
        description="The cluster is part of a Slurm federation: squeue asks the whole "
        "federation for the jobs (one more slurmctld RPC per read) instead of the local "
        "cluster only.",
    )
    capacity_from_sinfo: bool = Field(
        True,
        description="Advertise the partition's CPUs, memory and GPUs (from sinfo) as the "
        "node's capacity; off: node.capacity is used.",
    )
