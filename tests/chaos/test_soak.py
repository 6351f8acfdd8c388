"""The short, seeded run of `make chaos` (benchmarks/chaos.py): two minutes of pods
arriving on a Podman, a Slurm and an HTCondor (stand-in) node while faults keep coming.
Any invariant violation fails it. It runs after every other test (tests/conftest.py):
its faults restart the testbed's daemons."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = "20261203"  # every fault kind may be drawn


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_two_minutes_of_faults_break_no_invariant(testbed):
    env = {**os.environ, "CHAOS_MINUTES": "2", "CHAOS_SEED": SEED}
    env.pop("CHAOS_FAULTS", None)
    done = subprocess.run(
        [sys.executable, "benchmarks/chaos.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    report = "\n".join(line for line in done.stdout.splitlines() if "waiting for CSR" not in line)
    print(report)
    assert done.returncode == 0, f"{report}\n{done.stderr[-3000:]}"
    assert report.splitlines()[-1].endswith(" 0 violations"), report
