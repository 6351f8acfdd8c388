"""The running agents, one per VirtualNode, in the operator's event loop.

Each node's agent runs in a task of its own; a failure there is recorded for the
node's status and retried with back-off, and never reaches the operator or the other
nodes. A restart stops the agent (its pods keep running) and starts a new one, which
adopts them as after any restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from vkpy.agent import Agent
from vkpy.aio import backoff
from vkpy.backend import Backend
from vkpy.config import Settings
from vkpy.errors import ConfigError
from vkpy.kube.client import Kube
from vkpy.operator.ports import PortPool
from vkpy.operator.status import View

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0
RETRY_FIRST, RETRY_CAP = 2.0, 60.0

BackendFactory = Callable[[Settings], Backend]


@dataclass
class Slot:
    """One VirtualNode's agent and what is known of it."""

    key: str  # namespace/name of the VirtualNode
    node_name: str
    port: int
    settings: Settings | None = None
    digest: str = ""
    agent: Agent | None = None
    task: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    problem: tuple[str, str] | None = None
    backend_error: str = ""

    def view(self, generation: int | None) -> View:
        agent = self.agent if self.task is not None and not self.task.done() else None
        health = agent.reporter.health if agent is not None else None
        if health is not None and not health.ok:
            self.backend_error = health.message
        node = agent.reporter.node if agent is not None else None
        return View(
            generation=generation,
            node_name=self.node_name,
            port=self.port,
            problem=self.problem,
            running=agent is not None,
            node_uid=str(((node or {}).get("metadata") or {}).get("uid", "")),
            health=health,
            phases=agent.pods.phase_counts() if agent is not None else {},
            backend_error=self.backend_error,
        )


class Fleet:
    def __init__(self, kube: Kube, ports: PortPool, build: BackendFactory) -> None:
        self.kube = kube
        self.ports = ports
        self.build = build
        self.slots: dict[str, Slot] = {}

    def claim(self, key: str, node_name: str) -> Slot:
        """The slot of VirtualNode ``key``, serving ``node_name``; refused when another
        VirtualNode serves that node already."""
        for other in self.slots.values():
            serving = other.settings is not None
            if serving and other.key != key and other.node_name == node_name:
                raise ConfigError(f"node {node_name} is served by VirtualNode {other.key}")
        slot = self.slots.get(key)
        if slot is None or slot.node_name != node_name or not slot.port:
            port = self.ports.take(key)
            slot = self.slots[key] = Slot(key, node_name, port)
        return slot

    def fail(self, key: str, node_name: str, reason: str, message: str) -> None:
        """Record why VirtualNode ``key`` cannot run (its agent, if any, keeps running);
        a slot made here serves no node until `claim`."""
        slot = self.slots.get(key) or self.slots.setdefault(key, Slot(key, node_name, 0))
        slot.problem = (reason, message)

    async def run(self, slot: Slot, settings: Settings, digest: str) -> bool:
        """Run ``slot``'s agent with ``settings``; restart it when they changed. Returns
        whether an agent was (re)started."""
        slot.problem = None
        alive = slot.task is not None and not slot.task.done()
        if alive and slot.settings == settings and slot.digest == digest:
            return False
        await self._halt(slot)
        slot.settings, slot.digest = settings, digest
        slot.stopping = asyncio.Event()
        slot.task = asyncio.create_task(self._serve(slot, settings), name=f"node:{slot.key}")
        return True

    async def _serve(self, slot: Slot, settings: Settings) -> None:
        attempt = 0
        while not slot.stopping.is_set():
            try:
                await self._run_agent(slot, settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                slot.problem = ("AgentFailed", str(exc))
                logger.warning("node %s (%s): agent failed: %s", slot.node_name, slot.key, exc)
            else:
                if slot.stopping.is_set():
                    return
                slot.problem = ("AgentFailed", "the agent stopped by itself")
            delay = backoff(attempt, first=RETRY_FIRST, cap=RETRY_CAP)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.stopping.wait(), delay)

    async def _run_agent(self, slot: Slot, settings: Settings) -> None:
        slot.agent = Agent(settings, self.kube, self.build(settings))
        relay = asyncio.create_task(self._relay(slot, slot.agent))
        try:
            await slot.agent.run()
        finally:
            relay.cancel()

    @staticmethod
    async def _relay(slot: Slot, agent: Agent) -> None:
        await slot.stopping.wait()
        agent.stop()

    async def _halt(self, slot: Slot) -> None:
        task, slot.task = slot.task, None
        if task is None:
            return
        slot.stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        except Exception:  # noqa: S110 - logged by _serve
            pass

    async def stop(self, key: str) -> Slot | None:
        """Stop VirtualNode ``key``'s agent and forget it; its pods keep running."""
        slot = self.slots.pop(key, None)
        if slot is not None:
            await self._halt(slot)
            self.ports.release(key)
        return slot

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(key) for key in list(self.slots)))
