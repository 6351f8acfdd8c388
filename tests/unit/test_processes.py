import sys

import pytest

from vkpy.testing.errors import TestbedError
from vkpy.testing.processes import Supervisor


def test_start_is_idempotent_and_stop_ends_the_process(tmp_path):
    supervisor = Supervisor(tmp_path)
    pid = supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert supervisor.start("sleeper", ["false"]) == pid
    assert supervisor.names() == ["sleeper"]
    supervisor.stop("sleeper")
    assert supervisor.pid("sleeper") is None
    assert supervisor.names() == []


def test_sigterm_ignoring_process_is_killed(tmp_path):
    supervisor = Supervisor(tmp_path)
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('up', flush=True); time.sleep(60)"
    )
    supervisor.start("stubborn", [sys.executable, "-c", code])
    supervisor.wait_until("stubborn", lambda: "up" in supervisor.log_tail("stubborn"), what="start")
    supervisor.stop("stubborn", timeout=0.5)
    assert supervisor.pid("stubborn") is None


def test_a_daemon_that_dies_fails_with_its_log(tmp_path):
    supervisor = Supervisor(tmp_path)
    supervisor.start("broken", [sys.executable, "-c", "print('bad flag --x'); raise SystemExit(2)"])
    with pytest.raises(TestbedError, match=r"broken exited before readiness:\n.*bad flag --x"):
        supervisor.wait_until("broken", lambda: False, what="readiness", timeout=10)
