"""The SSH-Slurm backend: each Kubernetes pod one Slurm job, submitted through a
command runner (`vkpy.transport`: SSH to a login node, or local on one).

Modules: `naming` (job names, the work directory layout), `flags` (sbatch flags from
the configuration, annotations and resources), `runtime` (a container's argv and
environment under Apptainer, Singularity or Podman), `template` and `script` (the
batch script and everything create() stages), `state` (Slurm job states), `queue`
(squeue/sacct/sinfo commands and their output), `report` (status files + Slurm →
`PodRun`), `logs` (reading and following log files), `podlog` (log records stamped with
the pod). Those are pure functions over plain values; the I/O is in `listing` (what
list() reads and remembers), `backend` (`SlurmBackend`) and `build` (a backend with the
runner its configuration asks for).
"""

from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.backends.slurm.build import build_slurm_backend

__all__ = ["SlurmBackend", "build_slurm_backend"]
