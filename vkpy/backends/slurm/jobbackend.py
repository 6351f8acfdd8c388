"""`JobBackend`: what the Slurm and HTCondor backends share around their batch system.

Both keep each pod in a work directory ``<work_dir>/<node>/<pod uid>`` on the login
(or submit) node, reached through a command runner; both submit one job per pod and
read status from the work directory and one queue query per tick. This base holds the
parts that do not depend on the batch system: the work directory's base, one lock per
pod, submission bookkeeping, refusals, the grace period hand-over, clean-up and the
lifecycle logs. Subclasses say how to submit, query, remove and check health.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ClassVar, TypeVar

from vkpy.backend import PodRun, PodSpec
from vkpy.backends.slurm import runtime, script, workdir
from vkpy.backends.slurm.book import PodBook
from vkpy.backends.slurm.naming import Layout
from vkpy.backends.slurm.podlog import PodLog
from vkpy.config import HTCondorConfig, SlurmConfig
from vkpy.errors import BackendError, BackendUnavailable, PodRejected
from vkpy.transport import Completed, Runner

logger = logging.getLogger(__name__)
T = TypeVar("T")

STOP_MARGIN_SECONDS = 10.0  # past the grace period, for the script to record and exit
# Answers that say "try again later", not "this pod cannot run".
TRANSIENT_MARKERS = (
    "socket timed out",
    "timed out",
    "unable to contact slurm controller",
    "failed to connect",
    "can't find address",
    "connection refused",
    "temporarily unavailable",
    "try again",
    "zero bytes were transmitted",
    "communication connection failure",
    "not responding",
    "transport endpoint",
)


def transient(completed: Completed) -> bool:
    """Whether a failed batch command is worth retrying (not found, unreachable, busy)."""
    text = completed.stderr.decode("utf-8", errors="replace").lower()
    return completed.status in (126, 127) or any(m in text for m in TRANSIENT_MARKERS)


class JobBackend(abc.ABC):
    """The batch-system-independent half of a job backend; see the module docstring."""

    kind: str
    system: ClassVar[str]  # "Slurm", "HTCondor": for messages
    login: ClassVar[str]  # what the runner reaches: "login node", "submit node"

    def __init__(
        self,
        runner: Runner,
        config: SlurmConfig | HTCondorConfig,
        node_name: str,
        book: PodBook,
        settings: script.Settings,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.5,
    ) -> None:
        self.runner = runner
        self.node = node_name
        self.book = book
        self.settings = settings
        self._clock = clock
        self._poll = poll_seconds
        self._layout: Layout | None = None
        self._work_dir = config.work_dir
        self._runtime = config.runtime
        self._retention = config.work_dir_retention_seconds
        # One lock per pod in use; a pod nobody works on holds none.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and make the node's base directory; an unreachable login node is
        reported by health() and retried on use, not fatal."""
        try:
            await self._ready()
        except BackendUnavailable as exc:
            logger.warning(
                "%s backend for node %s: %s (retrying on use)", self.system, self.node, exc
            )
            return
        logger.info(
            "%s backend for node %s started on %s, work directory %s, runtime %s",
            self.system,
            self.node,
            self.runner.target,
            self.layout.base,
            self._runtime,
        )

    async def close(self) -> None:
        logger.info(
            "%s backend for node %s: commands %s, connections opened %d",
            self.system,
            self.node,
            dict(self.runner.calls),
            self.runner.connections_opened,
        )
        await self.runner.close()

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            raise BackendUnavailable(
                f"the {self.system} backend has not reached the {self.login} yet"
            )
        return self._layout

    async def _ready(self) -> Layout:
        if self._layout is not None:
            return self._layout
        base = f"{self._work_dir}/{self.node}"
        done = await self.runner.run(
            ["sh", "-c", 'umask 077 && mkdir -p -- "$1" && cd -- "$1" && pwd -P', "sh", base],
            idempotent=True,
        )
        if not done.ok or not done.text.strip():
            raise BackendUnavailable(f"cannot make the work directory {base}: {done.describe()}")
        self._layout = Layout(done.text.strip().splitlines()[-1])
        return self._layout

    def _lock(self, uid: str) -> asyncio.Lock:
        lock = self._locks.get(uid)
        if lock is None:
            lock = self._locks[uid] = asyncio.Lock()
        return lock

    # ------------------------------------------------------------ create, list

    def _remember(self, pod: PodSpec, job_id: str) -> None:
        self.book.remember(pod.uid, job_id, namespace=pod.namespace, name=pod.name)

    async def _refused(
        self, pod: PodSpec, pod_dir: str, command: str, answer: Completed, log: PodLog
    ) -> None:
        """A submission failed: retried later if transient, else the pod is rejected
        (and its work directory removed)."""
        if transient(answer):
            raise BackendUnavailable(f"{command} failed, to be retried: {answer.describe()}")
        log.warning("%s refused the pod: %s", command, answer.describe())
        with contextlib.suppress(BackendError):
            await self.runner.run(["rm", "-rf", "--", pod_dir])
        stderr = answer.stderr.decode("utf-8", errors="replace").strip()
        raise PodRejected(f"{command} refused pod {pod.key}: {stderr or answer.describe()}")

    async def list(self) -> Mapping[str, PodRun]:
        runs = await self.book.list(await self._ready())
        killed = self.book.take_unswept()
        if killed:  # jobs killed before their script could stop their containers
            try:
                await self._sweep(killed)
            except BackendError as exc:
                self.book.unswept.update(killed)  # the next listing tries again
                logger.warning("cannot remove the containers of ended jobs: %s", exc)
        return runs

    async def _sweep(self, uids: Sequence[str], first: Sequence[str] = ()) -> Completed | None:
        """Run ``first`` (if any), then remove what is left of ``uids``' containers, in one
        remote command; see `runtime.sweep_argv`."""
        argv = runtime.sweep_argv(self.settings.runtime, uids, first)
        if not argv:
            return None
        answer = await self.runner.run(argv, idempotent=True)
        if not answer.ok and not first:
            raise BackendError(f"container clean-up failed: {answer.describe()}")
        return answer

    # ------------------------------------------------------------ delete

    @abc.abstractmethod
    async def delete(self, uid: str, *, grace_seconds: int) -> None:
        """Stop the pod's job within the grace period, confirm it is gone, clean up."""

    async def _hand_grace(self, uid: str, layout: Layout, grace: int, log: PodLog) -> None:
        """Tell the job script how long its containers may take to stop; the script's
        own grace period applies if this cannot be written."""
        try:
            await self.runner.put(f"{layout.pod(uid)}/grace", b"%d\n" % max(grace, 0), mode=0o600)
        except BackendUnavailable:
            raise
        except BackendError as exc:
            log.warning("cannot hand the job its grace period: %s", exc)

    async def _wait_gone(
        self, still_there: Callable[[], Awaitable[Sequence[T]]], timeout: float
    ) -> Sequence[T]:
        """Poll ``still_there`` with back-off until it finds nothing or ``timeout``
        passes; what it found last (nothing: gone)."""
        deadline = time.monotonic() + timeout
        pause = self._poll
        while left := await still_there():
            if time.monotonic() >= deadline:
                return left
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        return left

    async def _clean(self, uid: str, layout: Layout, log: PodLog) -> None:
        """The job is over: remove what is left of its containers, then its directory.
        Raises BackendUnavailable (delete() is retried) until no container is left."""
        try:
            await self._sweep([uid])
        except BackendUnavailable:
            raise
        except BackendError as exc:
            raise BackendUnavailable(f"pod uid {uid}: {exc}") from exc
        podman = self.settings.runtime.executable if self._runtime == "podman" else None
        await workdir.remove(
            self.runner, layout, uid, log, retention_seconds=self._retention, podman=podman
        )
        self.book.forget(uid)
