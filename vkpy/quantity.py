"""Kubernetes resource quantities ("250m", "1.5Gi", "1e3") as exact Decimals."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))([eE][+-]?\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$"
)


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity's value in base units; ValueError for anything else."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"invalid quantity {value!r}")
    number, exponent, suffix = match.groups()
    if exponent and suffix:
        raise ValueError(f"invalid quantity {value!r}: exponent and suffix together")
    try:
        return Decimal(number + (exponent or "")) * _SUFFIXES[suffix]
    except InvalidOperation as exc:
        raise ValueError(f"invalid quantity {value!r}") from exc
