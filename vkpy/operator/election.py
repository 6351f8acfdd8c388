"""Leader election over a coordination.k8s.io Lease, so that of several operator
replicas exactly one serves the VirtualNodes.

kubernetes_asyncio's elector does the protocol (acquire on expiry, renew, optimistic
concurrency on the Lease's resourceVersion). Around it this module adds what a
client-go controller does and that elector does not:

- a leader that cannot renew within the renew deadline stops serving, and the process
  exits non-zero; the deadline is shorter than the lease, so the old leader's agents
  have stopped before another replica may take the Lease: no pod is served twice;
- a leader that stops on purpose (SIGTERM, a rolling update) releases the Lease, so the
  next replica takes over at once instead of after the lease duration;
- an API that cannot be reached counts as a failed renewal, never as a crash.

kopf's own peering was not used: replicas of equal priority both keep serving (kopf only
warns), and a new replica of higher priority starts serving before the old one pauses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from vkpy.errors import VkpyError
from vkpy.kube.client import Kube

logger = logging.getLogger(__name__)

UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class LeadershipLost(VkpyError):
    """This replica could not renew its Lease in time and stopped serving."""


@dataclass(frozen=True)
class Election:
    """The kube-controller-manager's ``--leader-elect-*`` settings, in seconds."""

    name: str = "vkpy-operator"
    namespace: str = "default"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = ""

    def holder(self) -> str:
        return self.identity or default_identity()


def default_identity() -> str:
    """The pod's name (its hostname) with a suffix, unique across restarts of the pod."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def pod_namespace(account_dir: str) -> str | None:
    """The namespace a pod runs in, from its service account's files."""
    try:
        with open(os.path.join(account_dir, "namespace"), encoding="utf-8") as file:
            return file.read().strip() or None
    except OSError:
        return None


class _UtcLeaseLock(LeaseLock):
    """The elector writes local naive times; a Lease's times are UTC."""

    def time_str_to_iso(self, str_time: str) -> str | None:
        for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
            try:
                local = datetime.strptime(str_time, fmt)
            except ValueError:
                continue
            return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return None


class _Elector(leaderelection.LeaderElection):
    async def try_acquire_or_renew(self) -> bool:
        try:
            return await super().try_acquire_or_renew()
        except UNREACHABLE as exc:
            logger.warning("leader election: the API is unreachable: %s", exc)
            return False


async def serve_while_leading(
    kube: Kube, election: Election, serve: Callable[[], Awaitable[None]]
) -> None:
    """Wait for the Lease, run ``serve`` while it is held, release it when ``serve`` ends.

    Raises `LeadershipLost` if the Lease could not be renewed; ``serve`` has been
    cancelled and has wound down by then."""
    identity = election.holder()
    lock = _UtcLeaseLock(election.name, election.namespace, identity, kube.api)
    ended = asyncio.Event()
    outcome: list[BaseException | None] = []
    leading: list[asyncio.Task[None]] = []

    async def lead() -> None:
        leading.extend(task for task in [asyncio.current_task()] if task is not None)
        logger.info("leading: %s holds lease %s/%s", identity, election.namespace, election.name)
        try:
            await serve()
            outcome.append(None)
        except Exception as exc:  # re-raised below, once the Lease is let go
            outcome.append(exc)
        finally:
            ended.set()

    async def stopped() -> None:
        pass

    config = electionconfig.Config(
        lock,
        lease_duration=round(election.lease_duration),  # the Lease holds whole seconds
        renew_deadline=election.renew_deadline,
        retry_period=election.retry_period,
        onstarted_leading=lead,
        onstopped_leading=stopped,
    )
    logger.info("waiting to lead as %s (lease %s/%s)", identity, election.namespace, election.name)
    elector = asyncio.create_task(_Elector(config).run(), name="leader election")
    done = asyncio.create_task(ended.wait())
    try:
        await asyncio.wait({elector, done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        done.cancel()
    if not outcome:  # the elector ended: renewals failed (it has cancelled ``lead``) or it broke
        for task in leading:
            task.cancel()
        if leading:
            await ended.wait()
        error = elector.exception()
        if error is not None:
            raise error
        raise LeadershipLost(f"{identity} could not renew lease {election.name} in time")
    elector.cancel()
    await asyncio.gather(elector, return_exceptions=True)
    await release(kube, election, identity)
    if outcome[0] is not None:
        raise outcome[0]


async def release(kube: Kube, election: Election, identity: str) -> None:
    """Give the Lease up, if still ours, so that a standby takes it without waiting."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/{election.namespace}/leases/{election.name}"
    try:
        lease = await kube.get(path)
        if (lease.get("spec") or {}).get("holderIdentity") != identity:
            return
        version = lease["metadata"]["resourceVersion"]
        await kube.merge_patch(
            path,
            {"metadata": {"resourceVersion": version}, "spec": {"holderIdentity": None}},
        )
        logger.info("released lease %s/%s", election.namespace, election.name)
    except VkpyError as exc:
        logger.warning("could not release lease %s: %s", election.name, exc)
