"""The SAF forwarder waits for the answer MTI of what it queued (0430 or 0630)."""

from __future__ import annotations

from posp.network.saf import answer_mti


def test_a_reversal_is_confirmed_by_0430_and_an_advice_by_0630() -> None:
    assert answer_mti("0420") == "0430" and answer_mti("0620") == "0630"


def test_a_non_numeric_mti_has_no_answer() -> None:
    assert answer_mti("06X0") == ""
