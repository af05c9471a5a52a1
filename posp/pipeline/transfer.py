"""The step only transfers use (terminal-link §9): the receiving card from F62
(rows with ``receiving_card_in_f62``; a no-op for the others).

Invariants:
* The receiving card number lives in ``ctx.receiving_pan`` (memory only, like
  ``ctx.pan``): never logged, never journaled; the network request carries it
  in F103.
* A malformed F62 (not usage 10, length not matching, not 13-19 digits) answers
  30 naming field 62 in the log, before anything is journaled or sent.
* The single-transfer cap is the row's ``cap`` (``CapKind.TRANSFER``), checked
  by ``management.check_caps`` like every cap: the terminal's TMS key 39, else
  the setting ``limits.transfer_cap_minor``; over it 61 before the journal.
"""

from __future__ import annotations

from posp.errors import DecodeError
from posp.iso8583.fields import parse_transfer_f62
from posp.log import get_logger
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext

_log = get_logger("posp.pipeline.transfer")


async def read_receiving_card(ctx: TxnContext) -> RC | None:
    """30 when F62 does not carry the receiving card as usage 10."""
    if not ctx.route.row.receiving_card_in_f62:
        return None
    value = ctx.message.get(62)
    try:
        if not isinstance(value, bytes):
            raise DecodeError("required field missing", field=62)
        ctx.receiving_pan = parse_transfer_f62(value)
    except DecodeError as exc:
        _log.info("bad receiving card field", field=exc.field, reason=exc.reason)
        return RC.FORMAT_ERROR
    return None
