"""What every batch system's backend shares: one pod one job, in a work directory on
the login (or submit) node, run by one job script, reached through a command runner.

Modules: `config` (`BatchConfig`, the fields every batch backend has), `naming` (the
work directory layout), `script` and `template` (the job script and everything create()
stages), `runtime` (a container's argv and environment under Apptainer, Singularity or
Podman), `records` (the status files the script writes, read back), `state` (`Phase`,
`Ending`: the words every system's states map to), `report` (the neutral `JobView`
and files → `PodRun`), `logs` (reading and following log files), `podlog` (records
stamped with the pod), `transient` (which failures are worth retrying). Those are pure;
the I/O is in `workdir` (staging, status files, removal), `book` (what listings
remember), `jobbackend` (`JobBackend`: the create / delete / logs / list flow) and
`runner` (the command runner a configuration asks for).

A new batch system (say PBS) is four small modules in its own package:

- ``config``: ``PBSConfig(BatchConfig)`` with ``kind: Literal["pbs"]`` and its own
  fields (queue, account), added to the union in `vkpy.config`;
- ``queue``: the argv of ``qsub``/``qstat``/``qdel`` and parsers of their output, a
  ``QUEUED_TEST`` shell line for log follows, and a state table from PBS job states to
  `state.Phase` and `state.Ending` (like `vkpy.backends.slurm.state`);
- ``listing``: a `book.PodBook` whose ``list()`` reads the status files
  (``read_files``), runs one ``qstat`` for the node's jobs and turns each into a
  `report.JobView` for ``conclude``;
- ``backend``: ``PBSBackend(JobBackend[PBSConfig])`` with the hooks: ``submission``
  (`script.prepare`, then `script.submission` with the ``qsub`` argv and the
  existing-job test), ``parse_job_id``, ``active`` (the pod's unfinished jobs),
  ``stop_argv`` (``qdel``, or ``qsig -s TERM`` when graceful), ``ping_argv``, and
  ``new_book``; plus a line in `vkpy.wiring`.

Everything else (staging, the job script, status, deletion with its grace period,
adoption after a restart, logs) it gets from here.
"""
