"""The contract's check of logs(): what the kubelet serves for ``kubectl logs`` and its
options, on one pod whose containers each exercise some of them."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

from vkpy.backend import LogOptions, Running
from vkpy.errors import PodNotFound
from vkpy.testing.contract.harness import ContractFailure, Harness, expect

# The kubelet's timestamp prefix: RFC 3339 with up to nine fraction digits, then a space.
STAMPED = re.compile(
    rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) (.*)", re.DOTALL
)
STAMPS_SCRIPT = "echo early; sleep 3; echo late; echo oops >&2"
STAMPS_OUTPUT = b"early\nlate\noops\n"


async def check_logs_hold_the_output(h: Harness) -> None:
    """logs(): stdout and stderr, tail_lines, limit_bytes, follow streaming until the
    container ends, since and timestamps, and PodNotFound for what does not exist."""
    pod = h.pod(
        "logs",
        [
            h.container("out", "for i in 1 2 3 4 5; do echo line-$i; done"),
            h.container("err", "echo to-stderr >&2"),
            h.container("ticks", "for i in 1 2 3 4; do echo tick-$i; sleep 1; done"),
            h.container("stamps", STAMPS_SCRIPT),
        ],
    )
    await h.create(pod)
    await h.wait_for(
        pod.uid,
        lambda r: (
            r is not None
            and any(c.name == "ticks" and isinstance(c.state, Running) for c in r.containers)
        ),
        "the ticking container to run",
    )
    # follow while the container runs: lines come as printed, and the stream ends by
    # itself when the container stops
    arrivals = await asyncio.wait_for(
        h.stream(pod.uid, "ticks", LogOptions(follow=True)), timeout=h.timeout
    )
    followed = b"".join(chunk for chunk, _ in arrivals)
    expect(followed == b"".join(b"tick-%d\n" % i for i in range(1, 5)), f"followed: {followed!r}")
    expect(
        len(arrivals) >= 2 and arrivals[-1][1] - arrivals[0][1] >= 1.5,
        f"the followed lines came all at once, not as printed: {arrivals}",
    )
    await h.finished(pod.uid)
    everything = await h.logs(pod.uid, "out")
    expect(everything == b"".join(b"line-%d\n" % i for i in range(1, 6)), f"logs: {everything!r}")
    tail = await h.logs(pod.uid, "out", LogOptions(tail_lines=2))
    expect(tail == b"line-4\nline-5\n", f"tail_lines=2 gave {tail!r}")
    limited = await h.logs(pod.uid, "out", LogOptions(limit_bytes=8))
    expect(limited == b"line-1\nl", f"limit_bytes=8 gave {limited!r}")
    errors = await h.logs(pod.uid, "err")
    expect(b"to-stderr" in errors, f"stderr is missing from the logs: {errors!r}")
    stamps = await h.logs(pod.uid, "stamps")
    expect(stamps == STAMPS_OUTPUT, f"stdout and stderr interleaved: {stamps!r}")
    never = "previous logs of a container never restarted"
    await expect_not_found(h, pod.uid, "out", LogOptions(previous=True), never)
    await expect_not_found(h, pod.uid, "nosuch", LogOptions(), "a container the pod lacks")
    await expect_not_found(h, str(uuid.uuid4()), "out", LogOptions(), "a pod never created")
    await since_and_timestamps(h, pod.uid)


async def expect_not_found(
    h: Harness, uid: str, container: str, options: LogOptions, what: str
) -> None:
    try:
        output = await h.logs(uid, container, options)
    except PodNotFound:
        return
    raise ContractFailure(f"logs of {what} did not raise PodNotFound but gave {output!r}")


async def since_and_timestamps(h: Harness, uid: str) -> None:
    """timestamps: each line after an RFC 3339 timestamp and a space; since: only the
    lines stamped at or after it (the kubelet's rules)."""
    stamped = await h.logs(uid, "stamps", LogOptions(timestamps=True))
    texts: list[bytes] = []
    moments: dict[bytes, datetime] = {}
    for line in stamped.splitlines():
        match = STAMPED.fullmatch(line)
        if match is None:
            raise ContractFailure(f"not an RFC 3339 timestamp, a space and a line: {line!r}")
        day, fraction, zone, text = match.groups()
        texts.append(text)
        moments[text] = parse_moment(day, fraction or b"", zone)
    expect(sorted(texts) == sorted(STAMPS_OUTPUT.splitlines()), f"timestamped: {stamped!r}")
    early, late = moments[b"early"], moments[b"late"]
    expect(late - early >= timedelta(seconds=2.5), f"3 s apart, stamped {early} and {late}")
    middle = early + (late - early) / 2
    after = await h.logs(uid, "stamps", LogOptions(since=middle))
    expect(after == b"late\noops\n", f"since the middle gave {after!r}")
    before = datetime.now(UTC) - timedelta(hours=1)
    whole = await h.logs(uid, "stamps", LogOptions(since=before))
    expect(whole == STAMPS_OUTPUT, f"since an hour ago gave {whole!r}")
    later = datetime.now(UTC) + timedelta(seconds=1)
    none = await h.logs(uid, "stamps", LogOptions(since=later))
    expect(none == b"", f"since a moment after the end gave {none!r}")


def parse_moment(day: bytes, fraction: bytes, zone: bytes) -> datetime:
    micros = fraction.decode().ljust(6, "0")[:6]
    offset = "+00:00" if zone == b"Z" else zone.decode()
    return datetime.fromisoformat(f"{day.decode()}.{micros}{offset}")
