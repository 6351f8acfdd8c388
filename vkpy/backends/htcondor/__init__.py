"""The HTCondor backend: each pod one HTCondor job.

The job runs the Slurm backend's job script (init containers in order, app containers
side by side, every run's exit code recorded) in the same work directory layout, so
only the HTCondor-specific parts are here: `submit` (the submit description: resources,
the VkpyPodUID/VkpyNode attributes, allowed_job_duration, extra commands from config
and ``htcondor.vkpy.io/`` annotations, validated), `state` (JobStatus → phase, hold
and removal reasons, real exit codes), `queue` (condor_submit/q/history/rm argv and
their JSON ClassAds), `listing` (one condor_q and one condor_history per listing) and
`backend` (`HTCondorBackend`). The work directory must be on a filesystem the execute
nodes share with the submit node: input files are not transferred.

Tested without a pool: generated submit descriptions are parsed by HTCondor's own
parser (the PyPI `htcondor` bindings), status parsing runs on fixtures written in
HTCondor's documented JSON ClassAd format, and the testbed's login node carries a
stand-in for condor_submit/q/history/rm (`vkpy.testing.condor_standin`) that prints
those formats and really runs the jobs. The pool itself (schedd, matchmaking, execute
nodes, file transfer, HTCondor's own signalling) is not exercised.
"""

from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.backends.htcondor.build import build_htcondor_backend

__all__ = ["HTCondorBackend", "build_htcondor_backend"]
