"""What the HTCondor stand-in parses: submit descriptions and the constraints the backend
sends (see `condor_standin`). Only the standard library: it is installed on the login
node beside the stand-in.
"""

from __future__ import annotations

import json
import re
from typing import Any

ClassAd = dict[str, Any]


# ---------------------------------------------------------------- submit descriptions


def parse_arguments(value: str) -> list[str]:
    """HTCondor's new argument syntax: the whole value in double quotes, words split on
    spaces, single quotes group, '' inside them is a literal quote, "" a double quote."""
    value = value.strip()
    if not (value.startswith('"') and value.endswith('"')):
        return value.split()
    body = value[1:-1].replace('""', "\x00")
    words: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    index = 0
    while index < len(body):
        char = body[index]
        if char == "'":
            if quoted and body[index + 1 : index + 2] == "'":
                current.append("'")
                index += 2
                continue
            quoted, started = not quoted, True
        elif char in " \t" and not quoted:
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            current.append('"' if char == "\x00" else char)
            started = True
        index += 1
    if started:
        words.append("".join(current))
    return words


def parse_submit(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(submit commands, custom job attributes) of a submit description."""
    commands: dict[str, str] = {}
    custom: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("queue"):
            break
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key.startswith("+") or key.upper().startswith("MY."):
            custom[key.lstrip("+").split(".", 1)[-1] if "." in key else key.lstrip("+")] = value
        else:
            commands[key.lower()] = value
    return commands, custom


def queue_items(text: str) -> list[dict[str, str]]:
    """The jobs of the description's queue statement, each as its item's variables:
    ``queue``, ``queue N``, or ``queue a,b from (`` one line per job ``)``; the last
    variable takes the rest of its line, as HTCondor does."""
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        if not line.lower().startswith("queue"):
            continue
        statement = line[len("queue") :].strip()
        if not statement:
            return [{}]
        if statement.isdecimal():
            return [{} for _ in range(int(statement))]
        match = re.fullmatch(r"([\w,\s]+?)\s+from\s*\(\s*", statement, re.IGNORECASE)
        if match is None:
            raise SystemExit(f"standin: unsupported queue statement {line!r}")
        names = [n for n in re.split(r"[\s,]+", match.group(1)) if n]
        items: list[dict[str, str]] = []
        for item in lines:
            if item.strip() == ")":
                return items
            if item.strip():
                values = re.split(r"[\s,]+", item.strip(), maxsplit=len(names) - 1)
                padded = values + [""] * (len(names) - len(values))
                items.append(dict(zip(names, padded, strict=True)))
        raise SystemExit("standin: the queue statement's items are not closed")
    return []


def expand(value: str, variables: dict[str, str]) -> str:
    """``$(name)`` macros (names case-insensitive), in one pass; an undefined one is
    empty, ``$(DOLLAR)`` is a literal ``$``."""
    lowered = {"dollar": "$", **{k.lower(): v for k, v in variables.items()}}
    # ``$$(...)`` is the schedd's, at match time: left as it is.
    return re.sub(
        r"\$\$|\$\((\w+)\)",
        lambda m: m.group(0) if m.group(1) is None else lowered.get(m.group(1).lower(), ""),
        value,
    )


def classad_value(text: str) -> Any:
    """A ClassAd literal from a submit file: "string", integer, real, true/false."""
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('\\"', '"')
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*", text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def memory_mb(value: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)B?", value.strip(), re.IGNORECASE)
    if not match:
        return int(float(value))
    number, unit = int(match.group(1)), match.group(2).upper()
    return {
        "K": number // 1024,
        "": number,
        "M": number,
        "G": number * 1024,
        "T": number * 1024 * 1024,
    }[unit]


def constraint(expression: str) -> Any:
    """A predicate for the constraints the backend sends: comparisons joined by &&."""
    clauses: list[tuple[str, bool, set[Any]]] = []
    for part in expression.split("&&"):
        jobs = re.fullmatch(
            r'\s*member\(strcat\(ClusterId,\s*"\.",\s*ProcId\),\s*\{([-\d.",\s]*)\}\)\s*', part
        )
        if jobs is not None:
            wanted = {j.strip().strip('"') for j in jobs.group(1).split(",") if j.strip()}
            clauses.append(("StandinJobId", True, wanted))
            continue
        member = re.fullmatch(r"\s*member\((\w+),\s*\{([-\d,\s]*)\}\)\s*", part)
        if member is not None:
            options = {int(n) for n in member.group(2).split(",") if n.strip()}
            clauses.append((member.group(1), True, options))
            continue
        match = re.fullmatch(
            r'\s*\(?\s*(\w+)\s*(==|=\?=|!=|=!=)\s*("(?:[^"\\]|\\.)*"|-?\d+)\s*\)?\s*', part
        )
        if match is None:
            raise SystemExit(f"standin: unsupported constraint {part!r}")
        name, operator, literal = match.groups()
        value = json.loads(literal)
        clauses.append((name, operator in ("==", "=?="), value))

    def holds(value: Any, wanted: Any) -> bool:
        return value in wanted if isinstance(wanted, set) else bool(value == wanted)

    def matches(ad: ClassAd) -> bool:
        ad = {**ad, "StandinJobId": f"{ad.get('ClusterId')}.{ad.get('ProcId')}"}
        return all(holds(ad.get(n), v) == equal for n, equal, v in clauses)

    return matches
