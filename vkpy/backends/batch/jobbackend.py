"""`JobBackend`: one pod one batch job, the same flow whatever the batch system.

Each pod lives in a work directory ``<work_dir>/<node>/<pod uid>`` on the login (or
submit) node, reached through a command runner. This base owns the whole flow:

- ``create`` renders the pod and, unless the last listing knows its job already, hands
  it to the bulk submission (`bulk`): pods created together are staged and submitted
  in one remote command, which checks each pod's own markers first, so a retried
  create never submits twice and costs no queue query.
- ``list`` is the system's `PodBook`, plus a sweep of containers a killed job left.
- ``delete`` cancels jobs still queued, hands running ones the grace period and stops
  them gracefully, stops hard what still runs after it, waits until the batch system
  confirms, then removes the work directory; it raises, to be retried, until then.
- ``logs`` reads (or follows) a run's log file (`logs`).
- ``exec``, ``attach`` and ``forward`` reach into the running job (`streams`).

A subclass gives the few things that differ (see `vkpy.backends.batch`): the
submission (`submission`: the files to stage, the existing-job test, the submit argv),
`parse_job_id`, the jobs a pod still has in the queue (`active`), the stop command
(`stop_argv`), the shell test for a still-queued job (`queued_test`), a health
command, its `PodBook`, and for the streams where a job runs (`where_test`,
`placement`) and how a command runs there (`on_node`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from vkpy.aio import Batcher
from vkpy.backend import Capacity, Health, LogOptions, PodRun, PodSpec
from vkpy.backends.batch import bulk, logs, naming, runtime, script, streams, workdir
from vkpy.backends.batch.book import Known, PodBook
from vkpy.backends.batch.clock import Pace, QueueClock
from vkpy.backends.batch.config import BatchConfig
from vkpy.backends.batch.naming import Layout
from vkpy.backends.batch.podlog import PodLog, pod_log
from vkpy.backends.batch.reach import Placement, Target
from vkpy.backends.batch.transient import transient
from vkpy.errors import BackendError, BackendUnavailable, PodNotFound, PodRejected
from vkpy.remote import Process, StreamRequest, Tunnel
from vkpy.transport import Completed, Runner

logger = logging.getLogger(__name__)
T = TypeVar("T")
C = TypeVar("C", bound=BatchConfig)

STOP_MARGIN_SECONDS = 10.0  # past the grace period, for the script to record and exit


@dataclass(frozen=True)
class Active:
    """A job of a pod the batch system has not finished with."""

    job_id: str
    running: bool  # its script may run: it is stopped gracefully, not just cancelled


class JobBackend(abc.ABC, Generic[C]):
    """The flow every batch system's backend shares; see the module docstring."""

    kind: str
    system: ClassVar[str]  # "Slurm", "HTCondor": for messages
    login: ClassVar[str]  # what the runner reaches: "login node", "submit node"
    queued_test: ClassVar[str]  # shell test, job id in "$job": succeeds while it is queued
    ping_argv: ClassVar[tuple[str, ...]]  # a cheap command the scheduler answers
    pod_logger: ClassVar[logging.Logger]  # the backend's own: records about its pods
    where_test: ClassVar[str]  # shell, job id in "$job": prints where it is (`placement`)

    def __init__(
        self,
        runner: Runner,
        config: C,
        node_name: str,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.5,
    ) -> None:
        self.runner = runner
        self.config = config
        self.node = node_name
        self.settings = script.Settings.from_config(
            config, node=node_name, relocatable=self.relocatable
        )
        self.book = self.new_book()
        self._submitter: Batcher[script.Submission, bulk.Outcome | None] = Batcher(
            self._submit_many,
            window=config.submit_window_seconds,
            largest=config.submit_batch_max,
            name=f"submit-{node_name}",
        )
        self.submitted = 0  # jobs this backend submitted (not found submitted)
        self._clock = clock
        self._poll = poll_seconds
        self._layout: Layout | None = None
        # One lock per pod in use; a pod nobody works on holds none.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # ------------------------------------------------------------ what each system gives

    @property
    def relocatable(self) -> bool:
        """Whether the job runs in a copy of the work directory (file transfer)."""
        return False

    @abc.abstractmethod
    def new_book(self) -> PodBook:
        """The system's listing of the node's pods (on `queue_clock` and `pace`)."""

    def queue_clock(self) -> QueueClock:
        return QueueClock(
            interval=self.config.queue_read_seconds, floor=self.config.min_queue_interval_seconds
        )

    def pace(self) -> Pace:
        return Pace(quiet=self.config.quiet_read_seconds)

    @property
    def poll_seconds(self) -> float:
        """How often the agent should call list(): the fast clock (`PodBook.list` paces
        itself slower when every pod is quiet)."""
        return self.config.status_read_seconds

    @abc.abstractmethod
    def submission(self, pod: PodSpec, layout: Layout) -> script.Submission:
        """What create() stages and runs (`script.submission`)."""

    @abc.abstractmethod
    def parse_job_id(self, text: str) -> str | None:
        """The job id in what the submission (or the existing-job test) printed."""

    @abc.abstractmethod
    async def active(self, uid: str) -> Sequence[Active]:
        """The pod's jobs the batch system has not finished with (BackendUnavailable
        when it cannot say)."""

    @abc.abstractmethod
    def stop_argv(self, uid: str, job_ids: Sequence[str], *, graceful: bool) -> list[str]:
        """The command that stops these jobs of the pod: ``graceful``, with SIGTERM to
        the job script (which stops its containers within the grace period)."""

    def health_problem(self, answer: Completed) -> str | None:
        """What is wrong, by `ping_argv`'s answer; None when the scheduler is fine."""
        return None if answer.ok else f"the scheduler does not answer: {answer.describe()}"

    def logs_away(self, uid: str, container: str) -> bool:
        """Whether the container's log is with the job for now (file transfer)."""
        return False

    @abc.abstractmethod
    def placement(self, answer: str, job_id: str) -> Placement:
        """Whether and where the job runs, by what `where_test` printed."""

    @abc.abstractmethod
    def on_node(self, target: Target, argv: Sequence[str], *, tty: bool) -> list[str]:
        """The command that runs ``argv`` on the target's node, inside its job (on a
        terminal with ``tty``)."""

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
            self.config.runtime,
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

    async def health(self) -> Health:
        try:
            await self._ready()
            answer = await self.runner.run(self.ping_argv, idempotent=True)
        except BackendUnavailable as exc:
            return Health(ok=False, message=f"{self.login} unreachable: {exc}")
        problem = self.health_problem(answer)
        return Health(ok=False, message=problem) if problem else Health(ok=True)

    async def capacity(self) -> Capacity | None:
        return None  # node.capacity says what to offer

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
        base = f"{self.config.work_dir}/{self.node}"
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

    def _pod_log(self, uid: str, namespace: str = "", name: str = "", job_id: str = "") -> PodLog:
        return pod_log(self.pod_logger, uid, namespace, name, job_id)

    # ------------------------------------------------------------ create

    async def create(self, pod: PodSpec) -> None:
        layout = await self._ready()
        submission = self.submission(pod, layout)
        log = self._pod_log(pod.uid, pod.namespace, pod.name)
        async with self._lock(pod.uid):
            known = self.book.known.get(pod.uid)
            if known is not None and known.job_id:
                log.debug("has %s job %s already", self.system, known.job_id)
                return
            started = time.monotonic()
            outcome = await self._submitter.call(submission)
            job_id = await self._settle(pod, submission, outcome, log)
            self._remember(pod, job_id)
        if outcome is not None and outcome.kind == "submitted":
            self.submitted += 1
            self._pod_log(pod.uid, pod.namespace, pod.name, job_id).info(
                "submitted as %s job %s in %.0f ms",
                self.system,
                job_id,
                (time.monotonic() - started) * 1000,
            )

    async def _submit_many(self, submissions: list[script.Submission]) -> list[bulk.Outcome | None]:
        """One remote command stages and submits them all (`bulk`)."""
        layout = await self._ready()
        data = bulk.archive(layout, submissions, mtime=time.time())
        uids = [s.uid for s in submissions]
        argv = bulk.argv(layout, submissions, parallel=self.config.submit_parallel)
        answer = await self.runner.run(argv, stdin=data, idempotent=True)
        if answer.status in bulk.NOT_STAGED:
            raise BackendUnavailable(
                f"cannot write the work directories under {layout.base}: {answer.describe()}"
            )
        outcomes = bulk.parse(answer.text)
        if len(submissions) > 1:
            logger.debug("submitted %d pods in one command", len(submissions))
        return [outcomes.get(uid) for uid in uids]

    async def _settle(
        self,
        pod: PodSpec,
        submission: script.Submission,
        outcome: bulk.Outcome | None,
        log: PodLog,
    ) -> str:
        """The pod's job id from its outcome; raises to be retried (or rejected)."""
        command = submission.command[0]
        if outcome is None:
            raise BackendUnavailable(f"the submission of pod {pod.key} gave no answer")
        if outcome.kind in ("submitted", "existing"):
            return outcome.job_id
        if outcome.kind == "refused" and outcome.answer is not None:
            refused = dataclasses.replace(outcome.answer, argv=submission.command)
            await self._refused(pod, submission.pod_dir, command, refused, log)
        if outcome.kind == "asked" and outcome.answer is not None:
            # An earlier attempt's answer was lost; the queue knows its job.
            job_id = self.parse_job_id(outcome.answer.text)
            if job_id:
                log.info("found %s job %s of an earlier submission", self.system, job_id)
                await self.runner.put(
                    f"{submission.pod_dir}/status/{naming.JOB_ID}",
                    f"{job_id}\n".encode(),
                    mode=0o600,
                )
                return job_id
        raise BackendUnavailable(
            f"cannot tell whether pod {pod.key} was submitted: the {self.system} queue did "
            "not answer; retrying"
        )

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

    # ------------------------------------------------------------ list

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

    async def delete(self, uid: str, *, grace_seconds: int) -> None:
        """Stop the pod's job within the grace period, confirm it is gone, clean up."""
        try:
            naming.check_uid(uid)
        except PodRejected:
            return  # no pod with such a UID can exist here
        layout = await self._ready()
        known = self.book.known.get(uid, Known())
        async with self._lock(uid):
            log = self._pod_log(uid, known.namespace, known.name, known.job_id)
            # A job the last queue listing showed over has nothing left to stop.
            active = () if self.book.settled(uid) else await self.active(uid)
            if active:
                await self._stop(uid, layout, active, grace_seconds, log)
            await self._clean(uid, layout, log)

    async def _stop(
        self, uid: str, layout: Layout, active: Sequence[Active], grace: int, log: PodLog
    ) -> None:
        running = [j.job_id for j in active if j.running]
        queued = [j.job_id for j in active if not j.running]
        if queued:
            await self._run_stop(self.stop_argv(uid, queued, graceful=False))
        if running:
            await self._hand_grace(uid, layout, grace, log)
            log.info("stopping job %s with a grace period of %ds", ",".join(running), grace)
            await self._run_stop(self.stop_argv(uid, running, graceful=True))
            if not await self._gone(uid, max(grace, 0) + STOP_MARGIN_SECONDS):
                log.info("job still runs after the grace period: cancelling it")
        left = await self.active(uid)
        if left:
            # The job script stops its containers on the batch system's SIGTERM; the
            # sweep after the stop is the net for a script SIGKILLed before its trap ran.
            ids = [j.job_id for j in left]
            stop = self.stop_argv(uid, ids, graceful=False)
            answer = await self._sweep([uid], stop)
            if answer is not None and not answer.ok and transient(answer):
                raise BackendUnavailable(f"{stop[0]} failed: {answer.describe()}")
            if not await self._gone(uid, self.config.delete_timeout_seconds):
                raise BackendUnavailable(
                    f"{self.system} job {','.join(ids)} of pod uid {uid} "
                    f"is still there after {stop[0]}"
                )
        log.info("%s job is over", self.system)

    async def _run_stop(self, argv: Sequence[str]) -> None:
        answer = await self.runner.run(argv, idempotent=True)
        if not answer.ok and transient(answer):
            raise BackendUnavailable(f"{argv[0]} failed: {answer.describe()}")

    async def _hand_grace(self, uid: str, layout: Layout, grace: int, log: PodLog) -> None:
        """Tell the job script how long its containers may take to stop; the script's
        own grace period applies if this cannot be written."""
        try:
            await self.runner.put(f"{layout.pod(uid)}/grace", b"%d\n" % max(grace, 0), mode=0o600)
        except BackendUnavailable:
            raise
        except BackendError as exc:
            log.warning("cannot hand the job its grace period: %s", exc)

    async def _gone(self, uid: str, timeout: float) -> bool:
        return not await self._wait_gone(lambda: self.active(uid), timeout)

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
        podman = self.settings.runtime.executable if self.config.runtime == "podman" else None
        await workdir.remove(
            self.runner,
            layout,
            uid,
            log,
            retention_seconds=self.config.work_dir_retention_seconds,
            podman=podman,
        )
        self.book.forget(uid)

    # ------------------------------------------------------------ logs

    async def logs(self, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        layout = await self._ready()
        try:
            argv = await logs.log_argv(
                self.runner,
                layout,
                uid,
                container,
                options,
                system=self.system,
                queued=self.queued_test,
            )
        except PodNotFound:
            if self.logs_away(uid, container):
                return  # they come back with the job's output
            raise
        async for chunk in logs.stream_log(self.runner, argv):
            yield chunk

    # ------------------------------------------------------------ exec, attach, port-forward

    @property
    def runtime(self) -> runtime.RuntimeOptions:
        return self.settings.runtime

    async def layout_now(self) -> Layout:
        return await self._ready()

    async def exec(self, request: StreamRequest) -> Process:
        return await streams.exec_process(self, request)

    async def attach(self, request: StreamRequest) -> Process:
        return await streams.attach_process(self, request)

    async def forward(self, uid: str, port: int) -> Tunnel:
        return await streams.forward(self, uid, port)
