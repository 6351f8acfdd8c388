"""Where a pod's files live on the cluster, and the names that go into paths. Pure.

A pod's work directory is ``<work_dir>/<node>/<uid>`` (mode 0700)::

    job.sh                  the batch script
    spec/<c>.argv, <c>.env  each container's runtime argv and environment (NUL-separated, 0600)
    volumes/<volume>/       staged files and emptyDirs
    status/                 what list() reads: _pod (written at submission), _jobid,
                            _job (the script's begin/stop/end), <c> (each run's start/exit)
    logs/<c>.<run>.log      each run's output, stamped as it came (`template`, `logs`);
                            <c>.<run>.done once it ended
    logs/_job.log           the batch system's own log of the job, where it writes one
                            (HTCondor's user log): read with status/, as ``_events``
    run/                    the script's own bookkeeping (container PIDs)
    grace                   written by delete(): the grace period the script allows

Every batch system uses this layout; what names a job in its queue is each system's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vkpy.errors import PodRejected

META = "_pod"  # status file with the pod's identity and containers (JSON, one line)
JOB_ID = "_jobid"  # status file with the batch system's job id
JOB = "_job"  # status file the script writes about the whole job
EVENT_LOG = "logs/_job.log"  # the batch system's log of the job, under the pod's directory
EVENTS = "_events"  # the name the event log is read under, beside the status files

UID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CONTAINER = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_uid(uid: str) -> str:
    """``uid`` if it is fit for a path and a job name (Kubernetes UIDs are UUIDs)."""
    if not UID.match(uid):
        raise PodRejected(f"pod UID {uid!r} is not a UUID")
    return uid


def check_container_name(name: str) -> str:
    if len(name) > 63 or not _CONTAINER.match(name):
        raise PodRejected(f"container name {name!r} is not a DNS label")
    return name


def container_id(scheme: str, job_id: str, container: str, run: int) -> str:
    """``<scheme>://<job id>/<container>/<run>``, e.g. ``slurm://1234/main/0``."""
    return f"{scheme}://{job_id}/{container}/{run}"


@dataclass(frozen=True)
class Layout:
    """Paths on the cluster under the node's base directory (absolute, resolved)."""

    base: str  # <work_dir>/<node>

    def pod(self, uid: str) -> str:
        return f"{self.base}/{check_uid(uid)}"

    def status(self, uid: str) -> str:
        return f"{self.pod(uid)}/status"

    def script(self, uid: str) -> str:
        return f"{self.pod(uid)}/job.sh"

    def log(self, uid: str, container: str, run: int) -> str:
        return f"{self.pod(uid)}/logs/{container}.{run}.log"

    def log_done(self, uid: str, container: str, run: int) -> str:
        return f"{self.pod(uid)}/logs/{container}.{run}.done"

    def uid_of_status_file(self, path: str) -> tuple[str, str] | None:
        """(uid, file name) for ``<base>/<uid>/status/<file>``, and (uid, `EVENTS`) for
        the pod's `EVENT_LOG`; None for anything else."""
        prefix = f"{self.base}/"
        if not path.startswith(prefix):
            return None
        uid, _, rest = path[len(prefix) :].partition("/")
        if not UID.match(uid):
            return None
        if rest == EVENT_LOG:
            return uid, EVENTS
        parts = rest.split("/")
        if len(parts) != 2 or parts[0] != "status":
            return None
        return uid, parts[1]

    @property
    def trash(self) -> str:
        return f"{self.base}/.deleted"
