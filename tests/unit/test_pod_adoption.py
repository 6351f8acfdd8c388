"""Adoption waits for the backend: watching pods before knowing its jobs could submit
a pod twice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from vkpy.backend import PodRun
from vkpy.errors import BackendUnavailable
from vkpy.pods import PodController
from vkpy.testing.instant import InstantBackend


class FlakyBackend(InstantBackend):
    """Unreachable for the first ``failures`` listings."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.listings = 0

    async def list(self) -> Mapping[str, PodRun]:
        self.listings += 1
        if self.listings <= self.failures:
            raise BackendUnavailable("login node unreachable")
        return await super().list()


async def test_adoption_retries_until_the_backend_answers() -> None:
    backend = FlakyBackend(failures=3)
    backend.runs["uid-1"] = PodRun(uid="uid-1", namespace="ns", name="p", job_id="42")
    controller = PodController(
        cast(Any, None),
        backend,
        cast(Any, None),
        node_name="n",
        node_ip="127.0.0.1",
        poll_seconds=1,
        resync_seconds=60,
    )
    await controller.adopt(first_delay=0.001, max_delay=0.004)
    assert backend.listings == 4
    assert controller.orphans["uid-1"].job_id == "42"
