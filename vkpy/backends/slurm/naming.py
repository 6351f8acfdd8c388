"""A pod's Slurm job name and comment. Pure functions.

The job name ``vkpy_<node>_<uid>`` carries the node and the pod UID, so one ``squeue``
finds every job of the node and a restarted agent pairs jobs with pods. Node names
never hold ``_``, so one node's prefix is never the start of another's. Where the
pod's files live is every batch system's (`vkpy.backends.batch.naming`).
"""

from __future__ import annotations

from vkpy.backends.batch.naming import UID, check_uid

JOB_PREFIX = "vkpy_"


def job_name(node: str, uid: str) -> str:
    return f"{JOB_PREFIX}{node}_{check_uid(uid)}"


def uid_of_job(name: str, node: str) -> str | None:
    """The pod UID in one of this node's job names; None for any other job."""
    prefix = f"{JOB_PREFIX}{node}_"
    if not name.startswith(prefix):
        return None
    uid = name[len(prefix) :]
    return uid if UID.match(uid) else None


def job_comment(node: str, namespace: str, name: str, uid: str) -> str:
    return f"vkpy node={node} pod={namespace}/{name} uid={uid}"
