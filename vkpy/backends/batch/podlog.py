"""Log records about a pod: stamped with its namespace, name, UID and job id.

Each backend logs under its own logger (``vkpy.backends.slurm``,
``vkpy.backends.htcondor``): the batch layer's code is handed it, never picks one.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class PodLog(logging.LoggerAdapter[logging.Logger]):
    """Stamps records with the pod (namespace, name, uid) and its job id."""

    def process(self, msg: str, kwargs: MutableMapping[str, Any]) -> tuple[str, Any]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        where = f"{extra.get('pod_namespace') or '?'}/{extra.get('pod_name') or '?'}"
        job = extra.get("job_id")
        return (
            f"pod {where} (uid {extra.get('pod_uid')}{f', job {job}' if job else ''}): {msg}",
            kwargs,
        )


def pod_log(
    logger: logging.Logger, uid: str, namespace: str = "", name: str = "", job_id: str = ""
) -> PodLog:
    return PodLog(
        logger,
        {"pod_namespace": namespace, "pod_name": name, "pod_uid": uid, "job_id": job_id},
    )
