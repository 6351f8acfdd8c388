"""A pod's Slurm submission: the sbatch argv, and the test for a job it has already. Pure.

The work directory and the job script are every batch system's (`batch.script`);
Slurm adds its flags (from the configuration, the ``slurm.vkpy.io/`` annotations and
the containers' resources, all checked by `flags`) and finds a job submitted before by
its name (`naming.job_name`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vkpy.backend import PodSpec
from vkpy.backends.batch import script
from vkpy.backends.batch.naming import JOB_ID, Layout
from vkpy.backends.slurm import flags, naming
from vkpy.backends.slurm.config import SlurmConfig

# The job id a pod has already: from its work directory, or from the queue by name.
EXISTING = (
    'if [ -s "$1" ]; then cat "$1"; '
    'else squeue --me --noheader --states=all --name="$2" --format=%i; fi'
)


@dataclass(frozen=True)
class Options:
    """What sbatch takes from the configuration for every pod."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_flags: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: SlurmConfig) -> Options:
        return cls(
            partition=config.partition,
            account=config.account,
            qos=config.qos,
            sbatch_flags=tuple(config.sbatch_flags),
        )


def sbatch_argv(pod: PodSpec, *, node: str, options: Options, pod_dir: str) -> list[str]:
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={naming.job_name(node, pod.uid)}",
        f"--comment={naming.job_comment(node, pod.namespace, pod.name, pod.uid)}",
        f"--chdir={pod_dir}",
        f"--output={pod_dir}/logs/_job.out",
        "--export=ALL",
        "--no-requeue" if pod.restart_policy == "Never" else "--requeue",
    ]
    for what in ("partition", "account", "qos"):
        value = getattr(options, what)
        if value:
            argv.append(f"--{what}={value}")
    argv += flags.check_flags(options.sbatch_flags, source="backend.sbatch_flags")
    argv += flags.annotation_flags(pod.annotations)
    argv += flags.job_resources(pod).flags()
    limit = flags.time_limit(pod.active_deadline_seconds)
    if limit:
        argv.append(limit)
    argv.append(f"{pod_dir}/job.sh")
    return argv


def render(
    pod: PodSpec,
    *,
    layout: Layout,
    settings: script.Settings,
    now: float,
    options: Options = Options(),
) -> script.Submission:
    """Everything create() needs for ``pod``; ``now`` starts its activeDeadlineSeconds."""
    prepared = script.prepare(pod, layout=layout, settings=settings, now=now)
    pod_dir = prepared.pod_dir
    existing = (
        "sh",
        "-c",
        EXISTING,
        "sh",
        f"{pod_dir}/status/{JOB_ID}",
        naming.job_name(settings.node, pod.uid),
    )
    sbatch = sbatch_argv(pod, node=settings.node, options=options, pod_dir=pod_dir)
    return script.submission(prepared, sbatch, existing=existing)
