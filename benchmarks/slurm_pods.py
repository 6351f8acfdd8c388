"""`make bench` (Slurm part): one pod, then many at once (``BENCH_SLURM_PODS``, 1000 by
default), through `vkpy run` on the testbed's Slurm; what is measured is in `jobpods`.

Slurm's own view is `squeue` polled every 0.2 s as root; the scheduler load is
slurmctld's RPCs by the login user, from `sdiag`'s per-user counts.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

from common import run  # benchmarks/common.py
from jobpods import System, Times, bench

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
USER_RPC = re.compile(r"^\s*(\S+)\s+\(\s*(\d+)\)\s+count:(\d+)")


async def slurm_states(node: str, home: Path, running: Times, final: Times) -> None:
    """When Slurm first shows each of the node's jobs RUNNING, and finished, by pod UID."""
    prefix = f"vkpy_{node}_"
    while True:
        process = await asyncio.create_subprocess_exec(
            "squeue",
            "-h",
            "-t",
            "all",
            "-o",
            "%j %T",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await process.communicate()
        now = time.time()
        for line in out.decode().splitlines():
            name, _, state = line.partition(" ")
            if name.startswith(prefix):
                uid = name[len(prefix) :]
                if state == "RUNNING":
                    running.setdefault(uid, now)
                elif state in FINAL:
                    running.setdefault(uid, now)
                    final.setdefault(uid, now)
        await asyncio.sleep(0.2)


def rpcs_by_user(sdiag: str) -> dict[str, int]:
    """`sdiag`'s "Remote Procedure Call statistics by user" section, as counts."""
    counts: dict[str, int] = {}
    section = False
    for line in sdiag.splitlines():
        if line.startswith("Remote Procedure Call statistics"):
            section = "by user" in line
            continue
        match = USER_RPC.match(line) if section else None
        if match:
            counts[match[1]] = int(match[3])
    return counts


def user_rpcs(user: str) -> int:
    done = subprocess.run(["sdiag"], capture_output=True, text=True, check=True)
    return rpcs_by_user(done.stdout).get(user, 0)


SLURM = System(
    name="Slurm",
    config="slurm.yaml",
    pods=int(os.environ.get("BENCH_SLURM_PODS", "1000")),
    command=["sh", "-c", os.environ.get("BENCH_SLURM_COMMAND", "true; sleep 30")],
    watch_queue=slurm_states,
    counters={
        'vkpy_backend_calls_total{operation="list"}': "agent_status_reads",
        'vkpy_runner_commands_total{command="squeue"}': "agent_squeue_calls",
        'vkpy_runner_commands_total{command="sacct"}': "agent_sacct_calls",
        "vkpy_ssh_connections_opened_total": "ssh_connections_opened",
    },
    count_calls=user_rpcs,
)

if __name__ == "__main__":
    run("slurm", lambda endpoints, work: bench(SLURM, endpoints, work))
