"""The /containerLogs query is read exactly as the kubelet reads it."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiohttp import web

from vkpy.backend import LogOptions
from vkpy.kubeletapi.logquery import parse_log_query, parse_rfc3339

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def parse(**query: str | list[str]) -> LogOptions:
    values = {k: v if isinstance(v, list) else [v] for k, v in query.items()}
    return parse_log_query(values, now=NOW)


def refused(**query: str) -> web.HTTPException:
    with pytest.raises(web.HTTPException) as caught:
        parse(**query)
    return caught.value


def test_nothing_given_is_the_default():
    assert parse() == LogOptions()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("true", True), ("1", True), ("", True), ("yes", True), ("TRUE", True)],
        *[("false", False), ("False", False), ("FALSE", False), ("0", False)],
    ],
)
def test_booleans_are_true_unless_false_or_zero(value, expected):
    options = parse(follow=value, timestamps=value, previous=value)
    assert (options.follow, options.timestamps, options.previous) == (expected,) * 3


def test_only_the_first_value_counts():
    assert parse(follow=["false", "true"]).follow is False
    assert parse(tailLines=["3", "x"]).tail_lines == 3


@pytest.mark.parametrize(("text", "lines"), [("0", 0), ("10", 10), ("+7", 7), ("00012", 12)])
def test_tail_lines(text, lines):
    assert parse(tailLines=text).tail_lines == lines


@pytest.mark.parametrize("text", ["", "ten", "1.5", " 3", "3 ", "1_000", "0x10", "9" * 20])
def test_integers_that_do_not_decode_are_400(text):
    error = refused(tailLines=text)
    assert error.status == 400
    assert "tailLines" in error.text


def test_negative_tail_lines_is_invalid_422():
    error = refused(tailLines="-1")
    assert error.status == 422
    assert "tailLines: must be greater than or equal to 0" in error.text


def test_legacy_tail_overrides_tail_lines_and_all_removes_it():
    assert parse(tail="5", tailLines="9").tail_lines == 5
    assert parse(tail="all", tailLines="9").tail_lines is None
    assert parse(tail="", tailLines="9").tail_lines == 9  # empty tail is ignored


def test_limit_bytes():
    assert parse(limitBytes="1024").limit_bytes == 1024
    error = refused(limitBytes="0")
    assert (error.status, "limitBytes: must be greater than 0" in error.text) == (422, True)


def test_since_seconds_is_counted_back_from_now():
    assert parse(sinceSeconds="30").since == NOW - timedelta(seconds=30)
    assert refused(sinceSeconds="0").status == 422
    assert refused(sinceSeconds="soon").status == 400


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T10:00:00.5Z", datetime(2026, 11, 25, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-25T10:00:00.123456789Z", datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)),
        (
            "2026-11-25T12:30:00+02:00",
            datetime(2026, 11, 25, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-11-25T07:00:00-03:00", datetime(2026, 11, 25, 10, tzinfo=UTC)),
    ],
)
def test_since_time_is_rfc3339(text, moment):
    assert parse(sinceTime=text).since == moment


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25",
        "2026-11-25 10:00:00Z",  # a space is not RFC 3339's T
        "2026-11-25T10:00:00",  # no zone
        "2026-11-25t10:00:00z",
        "2026-13-25T10:00:00Z",
        "2026-11-25T25:00:00Z",
        "2026-11-25T10:00:00+24:00",
        "1764064800",
    ],
)
def test_since_time_that_is_not_rfc3339_is_400(text):
    error = refused(sinceTime=text)
    assert error.status == 400
    assert "sinceTime" in error.text


def test_empty_or_null_since_time_means_no_filter_but_still_counts_as_given():
    assert parse(sinceTime="").since is None
    assert parse(sinceTime="null").since is None
    error = refused(sinceTime="", sinceSeconds="10")
    assert error.status == 422
    assert "at most one of `sinceTime` or `sinceSeconds`" in error.text


def test_since_time_and_since_seconds_together_are_invalid():
    assert refused(sinceTime="2026-11-25T10:00:00Z", sinceSeconds="10").status == 422


def test_streams():
    assert parse(stream="All") == LogOptions()
    assert refused(stream="Stderr").status == 400  # one merged stream: cannot split it
    assert refused(stream="Both").status == 422


def test_every_option_reaches_the_backend():
    options = parse(
        follow="true",
        tailLines="10",
        timestamps="true",
        sinceTime="2026-11-25T11:59:00Z",
        limitBytes="500",
        previous="true",
        container="ignored",
        insecureSkipTLSVerifyBackend="true",
    )
    assert options == LogOptions(
        follow=True,
        tail_lines=10,
        timestamps=True,
        since=datetime(2026, 11, 25, 11, 59, tzinfo=UTC),
        limit_bytes=500,
        previous=True,
    )


def test_parse_rfc3339_rejects_garbage():
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339("yesterday")
