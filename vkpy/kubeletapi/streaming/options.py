"""The query of an exec, attach or port-forward request, read as the kubelet reads it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vkpy.errors import VkpyError

# The kubelet's query parameters: "1" turns a stream on.
STDIN, STDOUT, STDERR, TTY, COMMAND = "input", "output", "error", "tty", "command"


class BadStreamRequest(VkpyError):
    """The query cannot be served as asked: the API answers 400 with this message."""


@dataclass(frozen=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    command: tuple[str, ...] = ()


def stream_options(query: Mapping[str, Sequence[str]], *, command_needed: bool) -> StreamOptions:
    """Which streams the caller wants. With a terminal there is no stderr (its output is
    all on stdout), and at least one stream must be asked for, as the kubelet says."""

    def on(name: str) -> bool:
        values = query.get(name) or ()
        return bool(values) and values[0] == "1"

    tty, stdin, stdout, stderr = on(TTY), on(STDIN), on(STDOUT), on(STDERR)
    if tty:
        stderr = False
    if not (stdin or stdout or stderr):
        raise BadStreamRequest("you must specify at least 1 of stdin, stdout, stderr")
    command = tuple(query.get(COMMAND) or ())
    if command_needed and not command:
        raise BadStreamRequest("you must specify a command to run")
    return StreamOptions(stdin=stdin, stdout=stdout, stderr=stderr, tty=tty, command=command)


def forwarded_ports(values: Sequence[str]) -> tuple[int, ...]:
    """The ``ports`` of a WebSocket port-forward: repeated, or comma-separated."""
    if not values:
        raise BadStreamRequest('query parameter "port" is required')
    ports: list[int] = []
    for value in values:
        if not value:
            raise BadStreamRequest('query parameter "port" cannot be empty')
        for text in value.split(","):
            ports.append(parse_port(text))
    return tuple(ports)


def parse_port(text: str) -> int:
    """A port number from a header or query value, 1 to 65535."""
    try:
        port = int(text, 10)
    except ValueError:
        raise BadStreamRequest(f"unable to parse {text!r} as a port") from None
    if not 0 < port < 65536:
        raise BadStreamRequest(f"port {text!r} must be > 0 and < 65536")
    return port
