"""`make bench` (HTCondor part): one pod, then many at once (``BENCH_HTCONDOR_PODS``,
1000 by default), through `vkpy run` on the testbed's HTCondor stand-in, whose pool has
32 slots; what is measured is in `jobpods`.

The system's own view is the stand-in's job ads (its schedd's state), read every 0.2 s
as root. The stand-in has no daemons to load, so no scheduler RPCs are counted; the
agent's condor_q, condor_history and condor_submit calls are.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from common import run  # benchmarks/common.py
from jobpods import System, Times, bench

RUNNING, REMOVED, COMPLETED, HELD = 2, 3, 4, 5


async def standin_states(node: str, home: Path, running: Times, final: Times) -> None:
    """When the stand-in's schedd first holds each of the node's jobs running, and
    finished, by pod UID."""
    jobs = home / ".condor-standin" / "jobs"
    while True:
        now = time.time()
        for path in jobs.glob("*.json"):
            try:
                ad = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written
            if ad.get("VkpyNode") != node:
                continue
            uid = ad.get("VkpyPodUID", "")
            if ad["JobStatus"] in (RUNNING, REMOVED, COMPLETED, HELD) and "JobStartDate" in ad:
                running.setdefault(uid, now)
            if ad["JobStatus"] in (REMOVED, COMPLETED):
                final.setdefault(uid, now)
        await asyncio.sleep(0.2)


HTCONDOR = System(
    name="HTCondor",
    config="htcondor.yaml",
    pods=int(os.environ.get("BENCH_HTCONDOR_PODS", "1000")),
    command=["sh", "-c", os.environ.get("BENCH_HTCONDOR_COMMAND", "true; sleep 30")],
    watch_queue=standin_states,
    counters={
        'vkpy_backend_calls_total{operation="list"}': "agent_status_reads",
        'vkpy_runner_commands_total{command="condor_q"}': "agent_condor_q_calls",
        'vkpy_runner_commands_total{command="condor_history"}': "agent_condor_history_calls",
        "vkpy_ssh_connections_opened_total": "ssh_connections_opened",
    },
)

if __name__ == "__main__":
    run("htcondor", lambda endpoints, work: bench(HTCONDOR, endpoints, work))
