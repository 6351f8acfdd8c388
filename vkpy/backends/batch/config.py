"""What every batch-system backend's configuration shares (`BatchConfig`).

Each system's model (`vkpy.backends.slurm.config`, `vkpy.backends.htcondor.config`)
adds only its own fields and its ``kind``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vkpy.configbase import Strict
from vkpy.transport.config import SshConfig


class BatchConfig(Strict):
    """What every batch-system backend shares: where commands run, the pods' work
    directories, the container runtime the job script uses, and how long things take."""

    ssh: SshConfig | None = Field(
        None,
        description="The login node (submit node) to reach over SSH. Unset: the agent runs "
        "on it itself and calls the batch system's commands directly.",
    )
    work_dir: str = Field(
        "vkpy",
        description="Base directory of the pods' work directories on the cluster (job "
        "script, staged files, logs, exit codes), relative to the login user's home unless "
        "absolute (no ~). It must be on a filesystem the compute nodes share with the "
        "login node.",
        pattern=r"^[^~\n:,][^\n:,]*$",
    )
    runtime: Literal["apptainer", "singularity", "podman"] = Field(
        "apptainer", description="Container runtime the job script runs containers with."
    )
    runtime_path: str | None = Field(
        None,
        description="The runtime's executable on the compute nodes. Unset: found on PATH.",
        pattern=r"^[^=\n]+$",
    )
    runtime_flags: list[str] = Field(
        default_factory=list,
        description="Flags added to every container run (for example ['--nv'] for "
        "Apptainer on GPU nodes); the site's choice, never the pod's.",
    )
    allowed_host_paths: list[str] = Field(
        default_factory=list,
        description="hostPath volumes are refused unless under one of these directories "
        "of the compute nodes (for example /scratch).",
    )
    podman_network: Literal["host", "none"] = Field(
        "host",
        description="Network of containers under the podman runtime (rootless Podman "
        "offers host or none); host shares the compute node's network, as Apptainer does.",
    )
    kill_wait_seconds: int = Field(
        30,
        ge=1,
        description="When the batch system ends a job itself (Slurm: a time limit, "
        "preemption, the cluster's KillWait; HTCondor: condor_rm, periodic_remove, "
        "eviction, the job's job_max_vacate_time), containers get SIGTERM and this much "
        "time, less a second, before SIGKILL.",
    )
    command_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Timeout of one command (sbatch, squeue, condor_submit, condor_q...) "
        "on the login or submit node.",
    )
    delete_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="After a pod's grace period, how long delete waits for the batch "
        "system to confirm the job has ended before failing (the agent then retries).",
    )
    work_dir_retention_seconds: int = Field(
        0,
        ge=0,
        description="Keep a deleted pod's work directory (logs, script) this long, under "
        "<work_dir>/<node>/.deleted, for debugging; 0 removes it at once.",
    )
    max_pods: int = Field(1000, ge=1, description="Pods the node accepts.")
    status_read_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the status files of the node's unfinished pods are read "
        "while any of them starts, runs or stops: one command on the login node, touching "
        "only the filesystem, reading only the files that changed.",
    )
    quiet_read_seconds: float = Field(
        10.0,
        gt=0,
        description="How often the status files are read while every unfinished pod has "
        "waited in the queue for a minute or more.",
    )
    queue_read_seconds: float = Field(
        30.0,
        gt=0,
        description="How often the queue is read (squeue and sacct, condor_q and "
        "condor_history) for what only the scheduler knows: pending reasons, vanished "
        "jobs, node failures, preemption, time limits. It is read sooner, once, when the "
        "files show something only the queue can explain.",
    )
    min_queue_interval_seconds: float = Field(
        10.0,
        ge=0,
        description="For site admins: the queue is never read more often than this, "
        "whatever happens (status listings and submissions; see the README for what "
        "else queries the scheduler).",
    )
    submit_window_seconds: float = Field(
        0.05,
        ge=0,
        description="Pods created within this window, or while a submission is under "
        "way, are staged and submitted together, in one command on the login node; "
        "each pod still gets its own job.",
    )
    submit_batch_max: int = Field(
        200, ge=1, description="At most this many pods go in one submission command."
    )
    submit_parallel: int = Field(
        8,
        ge=1,
        description="Submit commands (sbatch, condor_submit) that one submission command "
        "runs at a time.",
    )
