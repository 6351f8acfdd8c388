"""The agent with the instant backend, as its own process, for `make bench`.

Usage: python benchmarks/instant_agent.py NODE_NAME STATS_FILE
Writes STATS_FILE (JSON) every half second and at exit: API requests by verb and
resource, peak RSS and CPU seconds of this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from collections import Counter
from pathlib import Path

from vkpy.agent import Agent, install_signal_handlers
from vkpy.config import load
from vkpy.kube.client import Kube, connect
from vkpy.logsetup import configure
from vkpy.metrics import api_request_labels
from vkpy.testing.instant import InstantBackend


def stats(requests: Counter[str]) -> dict[str, object]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "requests": dict(requests),
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "pid": os.getpid(),
    }


async def main(node: str, stats_file: Path) -> None:
    requests: Counter[str] = Counter()

    def count(method: str, path: str) -> None:
        verb, resource_name = api_request_labels(method, path)
        requests[f"{verb} {resource_name}"] += 1

    settings = load(
        None,
        {
            "node": {"name": node},
            "state_dir": str(stats_file.parent / node),
            "kubelet_api": {"port": 0, "health_port": 0},
        },
    )
    kube = Kube(await connect(None), on_request=count)
    agent = Agent(settings, kube, InstantBackend())
    install_signal_handlers(agent)

    async def report() -> None:
        while True:
            stats_file.write_text(json.dumps(stats(requests)))
            await asyncio.sleep(0.5)

    reporter = asyncio.create_task(report())
    try:
        await agent.run()
    finally:
        reporter.cancel()
        await kube.close()
        stats_file.write_text(json.dumps(stats(requests)))


if __name__ == "__main__":
    configure("WARNING", "text")
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
