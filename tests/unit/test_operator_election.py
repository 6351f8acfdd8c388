"""The operator's leader-election flags and the Lease times it writes."""

from datetime import datetime

import pytest

from vkpy.cli import main
from vkpy.operator.election import _UtcLeaseLock, pod_namespace


def test_inconsistent_timings_refuse_to_start_naming_the_flags(capsys):
    code = main(["operator", "--leader-elect", "--leader-elect-renew-deadline", "20s"])
    assert code == 2
    error = capsys.readouterr().err
    assert "--leader-elect-lease-duration" in error and "--leader-elect-renew-deadline" in error


def test_a_duration_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["operator", "--leader-elect-retry-period", "0s"])
    assert "a duration must be positive" in capsys.readouterr().err


def test_lease_times_are_written_in_utc(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    import time

    time.tzset()
    try:
        lock = _UtcLeaseLock.__new__(_UtcLeaseLock)
        local = datetime(2026, 7, 1, 8, 0, 0, 123456)  # EDT, UTC-4
        assert lock.time_str_to_iso(str(local)) == "2026-07-01T12:00:00.123456Z"
        assert lock.time_str_to_iso(str(local.replace(microsecond=0))) == (
            "2026-07-01T12:00:00.000000Z"
        )
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_the_pod_namespace_comes_from_the_account_files(tmp_path):
    assert pod_namespace(str(tmp_path)) is None
    (tmp_path / "namespace").write_text("vkpy\n")
    assert pod_namespace(str(tmp_path)) == "vkpy"
