"""The card organisation a switch-decided answer puts in F63, by BIN."""

from __future__ import annotations

import pytest

from posp.pipeline.respond import card_org_for


@pytest.mark.parametrize(
    ("pan", "org"),
    [
        ("6225880000000001", "CUP"),
        ("6011000000000004", None),  # Discover: not one of the five
        ("4111111111111111", "VIS"),
        ("5500000000000004", "MCC"),
        ("2221000000000009", "MCC"),
        ("3530111333300000", "JCB"),
        ("378282246310005", "AEX"),
        ("9999000000000000", None),
        ("62", None),
        (None, None),
    ],
)
def test_card_org_by_bin(pan: str | None, org: str | None) -> None:
    assert card_org_for(pan) == org
