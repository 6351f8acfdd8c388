"""The HTCondor backend: each pod one HTCondor job.

The job runs every batch system's job script in the same work directory layout
(`vkpy.backends.batch`), so only the HTCondor-specific parts are here: `config`
(`HTCondorConfig`), `commands` (which extra submit commands are allowed), `submit`
(the submit description: resources, the VkpyPodUID/VkpyNode attributes,
allowed_job_duration, extra commands from config and ``htcondor.vkpy.io/``
annotations), `state` (JobStatus → phase, hold and removal reasons, real exit codes),
`queue` (condor_submit/q/history/rm argv and their JSON ClassAds), `listing` (one
condor_q and one condor_history per listing), `backend` (`HTCondorBackend`) and `build`.
The work directory must be on a filesystem the execute nodes share with the submit
node, unless ``file_transfer: transfer``.

Tested without a pool: generated submit descriptions are parsed by HTCondor's own
parser (the PyPI `htcondor` bindings), status parsing runs on fixtures written in
HTCondor's documented JSON ClassAd format, and the testbed's login node carries a
stand-in for condor_submit/q/history/rm (`vkpy.testing.condor_standin`) that prints
those formats and really runs the jobs. The pool itself (schedd, matchmaking, execute
nodes, file transfer, HTCondor's own signalling) is not exercised.

Nothing is imported here: `vkpy.config` reads `config` without loading the backend.
"""
