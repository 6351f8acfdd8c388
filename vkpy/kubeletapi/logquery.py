"""The query of ``/containerLogs``, parsed exactly as the kubelet parses it.

The kubelet decodes the query into a v1 PodLogOptions with the apimachinery
parameter codec, then validates it:

- booleans (``follow``, ``previous``, ``timestamps``): absent or ``0``/``false``
  (any case) is false, any other value, the empty one included, is true;
- integers (``tailLines``, ``sinceSeconds``, ``limitBytes``): base-10 int64 with an
  optional sign; anything else fails to decode (400);
- ``sinceTime``: RFC 3339 (fractional seconds allowed); empty or ``null`` means
  the zero time, which still counts as given;
- the legacy ``tail`` overrides ``tailLines``, and ``tail=all`` removes it;
- only the first value of a repeated parameter counts; unknown parameters are ignored.

Validation failures (negative ``tailLines``, ``limitBytes`` < 1, ``sinceSeconds`` < 1,
both ``sinceTime`` and ``sinceSeconds``) answer 422, as the kubelet does. ``stream``
(Stdout/Stderr/All) is accepted only as ``All``: backends hand over one merged stream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone

from aiohttp import web

from vkpy.backend import LogOptions

_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)
_STREAMS = ("Stdout", "Stderr", "All")


def _first(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _bool(value: str | None) -> bool:
    if value is None:
        return False
    return not (value == "0" or value.lower() == "false")


def _int64(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not _INT64.fullmatch(value) or not _INT64_MIN <= int(value) <= _INT64_MAX:
        raise web.HTTPBadRequest(
            text=f"Unable to decode query: {name}: {value!r} is not an integer"
        )
    return int(value)


def parse_rfc3339(value: str) -> datetime:
    """A timestamp in Go's ``time.RFC3339`` layout; raises ValueError otherwise."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone == "Z":
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"{value!r} has an invalid time zone offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    micros = int((fraction or "").ljust(6, "0")[:6])
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz
    )


def parse_log_query(query: Mapping[str, Sequence[str]], *, now: datetime) -> LogOptions:
    """LogOptions from a ``/containerLogs`` query given as ``{name: [values...]}``.

    ``now`` turns ``sinceSeconds`` into a point in time. Raises the aiohttp HTTP error
    the kubelet would answer (400 or 422) with a message naming the parameter.
    """
    tail_text = _first(query, "tailLines")
    legacy_tail = _first(query, "tail")
    if legacy_tail:
        tail_text = None if legacy_tail == "all" else legacy_tail
    tail_lines = _int64("tailLines", tail_text)
    since_seconds = _int64("sinceSeconds", _first(query, "sinceSeconds"))
    limit_bytes = _int64("limitBytes", _first(query, "limitBytes"))
    since_time: datetime | None = None
    since_time_given = bool(query.get("sinceTime"))
    since_text = _first(query, "sinceTime")
    if since_text and since_text != "null":
        try:
            since_time = parse_rfc3339(since_text)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"Unable to decode query: sinceTime: {exc}") from exc
    stream = _first(query, "stream")

    problems = []
    if tail_lines is not None and tail_lines < 0:
        problems.append("tailLines: must be greater than or equal to 0")
    if limit_bytes is not None and limit_bytes < 1:
        problems.append("limitBytes: must be greater than 0")
    if since_seconds is not None and since_time_given:
        problems.append("at most one of `sinceTime` or `sinceSeconds` may be specified")
    elif since_seconds is not None and since_seconds < 1:
        problems.append("sinceSeconds: must be greater than 0")
    if stream is not None and stream not in _STREAMS:
        problems.append(f"stream: unsupported value {stream!r}: one of {', '.join(_STREAMS)}")
    if problems:
        raise web.HTTPUnprocessableEntity(text="Invalid request: " + "; ".join(problems))
    if stream in ("Stdout", "Stderr"):
        raise web.HTTPBadRequest(
            text=f"unable to return the given log stream: {stream!r}: this node's backends "
            "keep stdout and stderr as one stream; use stream=All"
        )

    since = since_time
    if since_seconds is not None:
        since = now - timedelta(seconds=min(since_seconds, 10**10))
    return LogOptions(
        follow=_bool(_first(query, "follow")),
        tail_lines=tail_lines,
        timestamps=_bool(_first(query, "timestamps")),
        since=since,
        limit_bytes=limit_bytes,
        previous=_bool(_first(query, "previous")),
    )
