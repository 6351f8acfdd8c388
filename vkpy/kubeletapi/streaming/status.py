"""How a session's end is told on its error stream, in the kubelet's words.

Protocol v4 (and v5) send a `metav1.Status` as JSON, success included; the older
ones send only the message of a failure, as plain text.
"""

from __future__ import annotations

import json

from vkpy.jsontypes import JSON

NON_ZERO_EXIT = "NonZeroExitCode"


def exit_status(code: int, command: tuple[str, ...]) -> JSON:
    """The Status of a process that ended with ``code``."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    what = f"error executing command [{' '.join(command)}], exit code {code}"
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {what}",
        "reason": NON_ZERO_EXIT,
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def error_status(message: str) -> JSON:
    """The Status of a session that could not run or ended abnormally."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "code": 500,
    }


def encode(status: JSON, *, structured: bool) -> bytes:
    """The bytes written to the error stream: JSON for v4 and later, else only the
    message of a failure (nothing at all for a success)."""
    if structured:
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return b""
    return str(status.get("message", "")).encode()
