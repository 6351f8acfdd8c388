"""`PodBook`: what a job backend remembers of its node's pods between listings.

Shared by the Slurm and HTCondor listings: the pods create() submitted, the pods
delete() removed (so a late listing never revives them), and the status files read
once in full on the first listing (the work directories are the record of what the
node holds) and then only for pods not finished yet.
"""

from __future__ import annotations

import abc
import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from vkpy.backend import PodRun
from vkpy.backends.slurm import report, workdir
from vkpy.backends.slurm.naming import Layout
from vkpy.transport import Runner

LOST_AFTER_SECONDS = 60.0  # a submitted job no record knows of counts as lost after this
FORGET_DELETED = 10000  # deleted UIDs remembered, so a late listing never revives them


@dataclass
class Known:
    """What the backend remembers of a pod between listings."""

    job_id: str = ""
    namespace: str = ""
    name: str = ""
    final: PodRun | None = None  # the record once it can no longer change
    last: PodRun | None = None  # the record the last listing returned
    missing_since: float | None = None  # when the batch system first had no record of its job
    without_files: int = 0  # listings in a row that found no status files
    rechecked: bool = False  # its files were read again after the job was said to end


class PodBook(abc.ABC):
    """The node's pods as the last listing saw them; subclasses do the listing."""

    def __init__(self, runner: Runner, *, node: str) -> None:
        self.runner = runner
        self.node = node
        self.known: dict[str, Known] = {}
        self.deleted: OrderedDict[str, None] = OrderedDict()
        self._discovered = False
        self._lock = asyncio.Lock()

    def remember(self, uid: str, job_id: str, *, namespace: str, name: str) -> None:
        """A pod create() submitted (or found submitted)."""
        self.deleted.pop(uid, None)
        known = self.known.setdefault(uid, Known())
        known.job_id, known.namespace, known.name = job_id, namespace, name

    def forget(self, uid: str) -> None:
        """A pod delete() removed: later listings never report it again."""
        self.known.pop(uid, None)
        self.deleted[uid] = None
        while len(self.deleted) > FORGET_DELETED:
            self.deleted.popitem(last=False)

    def learn(self, uid: str, job_id: str) -> None:
        """A job the queue shows for a pod not known yet (its files come next)."""
        if uid not in self.known and uid not in self.deleted:
            self.known[uid] = Known(job_id=job_id)

    async def read_files(self, layout: Layout) -> dict[str, report.PodFiles]:
        """Status files: every pod's on the first call, then unfinished pods' only."""
        if not self._discovered:
            files = await workdir.read_status(self.runner, layout, None)
            for uid in files:
                if uid not in self.deleted:
                    self.known.setdefault(uid, Known())
            self._discovered = True
            return files
        pending = [uid for uid, known in self.known.items() if known.final is None]
        return await workdir.read_status(self.runner, layout, pending)

    @abc.abstractmethod
    async def list(self, layout: Layout) -> Mapping[str, PodRun]:
        """Every pod of the node, from its files and the batch system's records."""
