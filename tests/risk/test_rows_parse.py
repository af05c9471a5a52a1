"""The backtest rows-file parser: valid rows round-trip through JSON, any other
line is a ConfigError naming the line and field, never another exception."""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from posp.errors import ConfigError
from posp.risk.cli import parse_row

_rows = st.fixed_dictionaries(
    {
        "txn_type": st.sampled_from(["purchase", "refund", "completion"]),
        "amount_minor": st.integers(0, 10**12 - 1),
        "card_hash": st.from_regex(r"\A[0-9a-f]{32}\Z"),
        "bin": st.from_regex(r"\A[0-9]{6}\Z"),
        "terminal_id": st.from_regex(r"\A[0-9]{8}\Z"),
        "merchant_id": st.from_regex(r"\A[0-9]{15}\Z"),
        "mcc": st.from_regex(r"\A[0-9]{4}\Z"),
        "local_time": st.datetimes(dt.datetime(2000, 1, 2), dt.datetime(2099, 1, 1)),
        "fallback": st.booleans(),
        "approved": st.booleans(),
    }
)


@settings(max_examples=100, deadline=None)
@given(_rows)
def test_valid_rows_parse_to_the_same_values(row: dict[str, object]) -> None:
    line = json.dumps(row, default=lambda t: t.isoformat())
    parsed = parse_row(line)
    assert parsed.approved is row["approved"]
    assert parsed.inp.amount_minor == row["amount_minor"]
    assert parsed.inp.local_time == row["local_time"] and parsed.inp.fallback is row["fallback"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), _rows.map(lambda r: {**r, "amount_minor": "x"}).map(str)))
def test_any_other_line_is_a_config_error_naming_where(line: str) -> None:
    try:
        parse_row(line, where="rows.jsonl:7")
    except ConfigError as exc:
        assert str(exc).startswith("rows.jsonl:7: ")
