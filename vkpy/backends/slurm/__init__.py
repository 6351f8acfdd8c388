"""The SSH-Slurm backend: each Kubernetes pod one Slurm job, submitted through a
command runner (`vkpy.transport`: SSH to a login node, or local on one).

Only what is Slurm's is here; the work directory, the job script, the runtimes and
the create/delete/logs flow are every batch system's (`vkpy.backends.batch`).
Modules: `config` (`SlurmConfig`), `naming` (job names and comments), `flags` (sbatch
flags from the configuration, annotations and resources), `sbatch` (the submission),
`state` (Slurm job states → batch phases and endings), `queue` (squeue/sacct/sinfo
commands and their output). Those are pure functions over plain values; the I/O is in
`listing` (what list() reads and remembers), `backend` (`SlurmBackend`) and `build`
(a backend with the runner its configuration asks for).

Nothing is imported here: `vkpy.config` reads `config` without loading the backend.
"""
