"""The comparison as a table, and what in it must fail a test run."""

from __future__ import annotations

from dataclasses import dataclass

from vkpy.testing.fidelity.known import KNOWN_DIFFERENCES
from vkpy.testing.fidelity.normalize import Flat, differences, summary


@dataclass(frozen=True)
class Row:
    case: str
    real: Flat
    candidate: Flat

    @property
    def differences(self) -> list[str]:
        return differences(self.real, self.candidate)

    @property
    def unknown(self) -> list[str]:
        """Differences ``KNOWN_DIFFERENCES`` does not list for this case."""
        known = KNOWN_DIFFERENCES.get(self.case, {})
        return [field for field in self.differences if field not in known]

    @property
    def match(self) -> str:
        if not self.differences:
            return "yes"
        return "NEW" if self.unknown else "known"


def render_table(rows: list[Row], *, candidate: str) -> str:
    lines = [
        f"| case | real kubelet | {candidate} | match | fields that differ |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = (row.case, summary(row.real), summary(row.candidate), row.match)
        lines.append(f"| {' | '.join(cells)} | {', '.join(row.differences) or '-'} |")
    return "\n".join(lines) + "\n"


def counts(rows: list[Row]) -> dict[str, int]:
    tally = {"yes": 0, "known": 0, "NEW": 0}
    for row in rows:
        tally[row.match] += 1
    return tally


def problems(rows: list[Row]) -> list[str]:
    """What fails a run: a difference nobody listed."""
    return [
        f"{row.case}: differs, unlisted, in {', '.join(row.unknown)}" for row in rows if row.unknown
    ]
