"""The steps only transfers have (terminal-link §9): the receiving card from F62
and the terminal's single-transfer cap.

Invariants:
* The receiving card number lives in ``ctx.receiving_pan`` (memory only, like
  ``ctx.pan``): never logged, never journaled; the network request carries it
  in F103.
* A malformed F62 (not usage 10, length not matching, not 13-19 digits) answers
  30 naming field 62 in the log, before anything is journaled or sent.
* The cap is read from ``Services.transfer_caps`` (the terminal's TMS parameter,
  §10 key 39, once terminal management provides it) and falls back to the
  setting ``limits.transfer_cap_minor``; an amount above it answers 61 before
  the journal, so nothing goes upstream.
"""

from __future__ import annotations

from dataclasses import dataclass

from posp.errors import DecodeError
from posp.iso8583.fields import parse_transfer_f62
from posp.log import get_logger
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext
from posp.pipeline.originals import amount_minor
from posp.settings import Settings

_log = get_logger("posp.pipeline.transfer")


@dataclass(frozen=True, slots=True)
class SettingsTransferCaps:
    """The default cap provider: one cap for every terminal, from the settings."""

    settings: Settings

    async def transfer_cap_minor(self, terminal_id: str) -> int | None:
        return self.settings.limits.transfer_cap_minor


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


async def transfer_cap_minor(ctx: TxnContext) -> int:
    """The terminal's single-transfer cap (its own, else the setting's)."""
    assert ctx.terminal is not None
    services = ctx.services
    provider = services.transfer_caps or SettingsTransferCaps(services.settings)
    cap = await provider.transfer_cap_minor(ctx.terminal.terminal_id)
    return services.settings.limits.transfer_cap_minor if cap is None else cap


async def check_transfer_cap(ctx: TxnContext) -> RC | None:
    """61 when the amount exceeds the terminal's single-transfer cap."""
    cap_minor = await transfer_cap_minor(ctx)
    if amount_minor(ctx) <= cap_minor:
        return None
    _log.info("transfer over the terminal's cap", cap_minor=cap_minor)
    return RC.EXCEEDS_AMOUNT_LIMIT
