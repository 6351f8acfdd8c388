from decimal import Decimal

import pytest

from vkpy.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", Decimal("0.25")),
        ("2", Decimal(2)),
        ("1Gi", Decimal(2**30)),
        ("1.5Mi", Decimal(1572864)),
        ("1e3", Decimal(1000)),
        ("128974848", Decimal(128974848)),
        ("129M", Decimal(129000000)),
        (3, Decimal(3)),
    ],
)
def test_quantities(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Gb", "1e3Mi", "--1"])
def test_bad_quantities(text):
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(text)
