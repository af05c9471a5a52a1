"""The terminal-link dialect written as a pyiso8583 specification.

Used to cross-check our codec against an independent implementation and as
the baseline of tests/bench/bench_codec.py.  pyiso8583 represents b and BCD
fields as upper-case hex strings, so z fields show ``D`` where we show ``=``
and b fields are hex where we hold bytes.
"""

from __future__ import annotations

from typing import Any

from posp.iso8583.spec import Align, Fmt, Wire
from posp.iso8583.terminal import TERMINAL_FIELDS


def _field_spec(
    fmt: Fmt, data: Wire, length: int, prefix_digits: int, align: Align
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "data_enc": "b" if data is not Wire.ASCII else "ascii",
        "len_enc": "bcd",
        # BCD prefixes: LL is 1 byte, LLL is 2 bytes.
        "len_type": {0: 0, 2: 1, 3: 2}[prefix_digits],
        "max_len": length,
        "desc": "",
    }
    if data is Wire.BCD:
        spec["len_count"] = "nibbles"
        spec["right_pad" if align is Align.LEFT else "left_pad"] = "0"
    return spec


def terminal_spec() -> dict[str, Any]:
    """pyiso8583 spec: 'h' = TPDU + header (11 bytes, hex), BCD MTI, binary bitmap."""
    spec: dict[str, Any] = {
        "h": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 11, "desc": ""},
        "t": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2, "desc": ""},
        "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": ""},
        "1": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": ""},
    }
    for field in TERMINAL_FIELDS:
        spec[str(field.number)] = _field_spec(
            field.fmt, field.data, field.length, field.prefix_digits, field.align
        )
    return spec
