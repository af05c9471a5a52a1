"""Hypothesis strategies: valid field values and messages for a dialect's table."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import strategies as st

from posp.iso8583 import FieldSpec, Fmt, Message

DIGITS = "0123456789"
PRINTABLE = "".join(chr(c) for c in range(32, 127))


def _sizes(spec: FieldSpec) -> st.SearchStrategy[int]:
    return st.integers(0, spec.length) if spec.variable else st.just(spec.length)


def value_for(spec: FieldSpec) -> st.SearchStrategy[str | bytes]:
    """Any value the spec accepts."""
    if spec.fmt is Fmt.B:
        return _sizes(spec).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    if spec.fmt is Fmt.N:
        alphabet = DIGITS
    elif spec.fmt is Fmt.Z:
        alphabet = DIGITS + "="
    else:
        alphabet = PRINTABLE
    text = _sizes(spec).flatmap(lambda n: st.text(alphabet, min_size=n, max_size=n))
    if spec.fmt is Fmt.Z:
        return text.filter(lambda s: s == "" or s.replace("=", "") != "")
    return text


def messages(specs: Iterable[FieldSpec]) -> st.SearchStrategy[Message]:
    """Messages with a random MTI and a random subset of the table's fields."""
    table = tuple(specs)
    fields = st.fixed_dictionaries({}, optional={s.number: value_for(s) for s in table})
    mti = st.text(DIGITS, min_size=4, max_size=4)
    return st.builds(Message, mti, fields)
