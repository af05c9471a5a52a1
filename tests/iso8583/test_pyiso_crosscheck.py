"""Our terminal-link encodings read the same through pyiso8583, an independent codec.

pyiso8583 shows b and BCD data as upper-case hex, so we compare b fields
(52, 55, 62, 64) as hex and z fields (35, 36) with 'D' for '='.  Every field
of the dialect is comparable that way; pyiso8583 strips only a '0' pad, which
is what we send.
"""

from __future__ import annotations

from typing import Any

import iso8583
from hypothesis import given, settings

from posp.iso8583 import TERMINAL_FIELDS, Message, TerminalFrame, decode_terminal, encode_terminal
from tests.bench.bench_codec import PURCHASE, pyiso_doc
from tests.iso8583.pyiso_spec import terminal_spec
from tests.iso8583.strategies import messages

SPEC = terminal_spec()


def as_pyiso(frame: TerminalFrame) -> dict[str, Any]:
    doc = pyiso_doc(frame)
    return {k: v for k, v in doc.items() if k not in ("p", "1")}


def decoded_by_pyiso(body: bytes) -> dict[str, Any]:
    doc, _ = iso8583.decode(body, SPEC)
    return {k: v for k, v in doc.items() if k not in ("p", "1")}


def test_pyiso8583_decodes_our_purchase_to_the_same_values() -> None:
    assert decoded_by_pyiso(encode_terminal(PURCHASE)) == as_pyiso(PURCHASE)


def test_pyiso8583_encodes_the_purchase_to_our_bytes_and_we_decode_them() -> None:
    theirs = bytes(iso8583.encode(as_pyiso(PURCHASE), SPEC)[0])
    assert decode_terminal(theirs) == PURCHASE


@settings(max_examples=150, deadline=None)
@given(messages(TERMINAL_FIELDS))
def test_pyiso8583_decodes_random_terminal_messages_to_the_same_values(
    message: Message,
) -> None:
    frame = TerminalFrame(bytes.fromhex("6000030000"), "603100000000", message)
    assert decoded_by_pyiso(encode_terminal(frame)) == as_pyiso(frame)
