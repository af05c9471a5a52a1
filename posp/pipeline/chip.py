"""Chip-card policy steps (terminal-link.md §8): the switch checks, it never verifies.

* :func:`check_chip_data`: a chip read (F22 ``05x`` contact, ``07x`` contactless)
  of a type whose row names an F55 use must carry an F55 that decodes and holds
  that use's mandatory tags, else 30; the log names the first missing tag (its
  name only, never a value).
* :func:`check_fallback`: a swipe (F22 ``02x``/``90x``) of a chip card (track 2
  service code starting ``2`` or ``6``) must say the chip read failed (60.5 =
  ``2``), else 45.  Allowed fallbacks are counted: ``posp_chip_fallbacks_total``
  (label ``result``: allowed / refused; no terminal id as a label), per terminal
  in :attr:`SwitchMetrics.fallbacks_by_terminal` (this process) and durably in
  the journal (entry mode ``80``), counted per batch by ``posp batch tc-report``.

Invariants: no cryptogram is verified or built here (the issuer does it through
its HSM); F55 passes to the network and back unchanged (``posp.network.mapping``,
``posp.pipeline.forward``).
"""

from __future__ import annotations

from typing import Final

from posp.errors import DecodeError
from posp.iso8583.tlv import decode_f55, first_missing_tag
from posp.log import get_logger
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext

CHIP_ENTRY_MODES: Final = ("05", "07")
SWIPE_ENTRY_MODES: Final = ("02", "90")
CHIP_SERVICE_CODES: Final = ("2", "6")
FALLBACK_CHIP_FAILED: Final = "2"  # 60.5: the chip could not be read
#: The journal's entry mode of an allowed fallback (ISO 8583 POS entry mode 80:
#: chip card read as magstripe after a chip failure): fallbacks are counted per
#: terminal and batch from the journal (``posp batch tc-report``).
FALLBACK_ENTRY_MODE: Final = "80"

_log = get_logger("posp.pipeline.chip")


def entry_mode(ctx: TxnContext) -> str:
    f22 = ctx.message.get(22)
    return f22[:2] if isinstance(f22, str) else ""


async def check_chip_data(ctx: TxnContext) -> RC | None:
    """30 when a chip read's F55 does not decode or lacks a mandatory tag."""
    use = ctx.route.row.chip
    if use is None or entry_mode(ctx) not in CHIP_ENTRY_MODES:
        return None
    f55 = ctx.message.get(55)
    if not isinstance(f55, bytes):
        _log.info("chip read without F55")
        return RC.FORMAT_ERROR
    try:
        missing = first_missing_tag(decode_f55(f55), use)
    except DecodeError as exc:
        _log.info("F55 does not decode", offset=exc.offset)
        return RC.FORMAT_ERROR
    if missing is not None:
        _log.info("F55 lacks a mandatory tag", tag=missing)
        return RC.FORMAT_ERROR
    return None


def service_code(track2: str) -> str:
    """The 3-digit service code after the separator and the YYMM expiry ("" if none)."""
    rest = track2.replace("D", "=").split("=", 1)
    return rest[1][4:7] if len(rest) == 2 else ""


def ic_condition(ctx: TxnContext) -> str:
    """60.5 (the second digit after 60.3), "" when the terminal did not send it."""
    extra = ctx.f60.extra
    return extra[1] if len(extra) >= 2 else ""


async def check_fallback(ctx: TxnContext) -> RC | None:
    """45 for a swiped chip card without 60.5 = 2; an allowed fallback is counted."""
    if ctx.route.row.chip is None or entry_mode(ctx) not in SWIPE_ENTRY_MODES:
        return None
    if not service_code(ctx.track2 or "").startswith(CHIP_SERVICE_CODES):
        return None
    metrics = ctx.services.metrics
    if ic_condition(ctx) != FALLBACK_CHIP_FAILED:
        metrics.chip_fallbacks.labels("refused").inc()
        _log.info("chip card swiped without a chip failure: use chip")
        return RC.FALLBACK_NOT_ALLOWED
    metrics.chip_fallbacks.labels("allowed").inc()
    ctx.journal_changes["entry_mode"] = FALLBACK_ENTRY_MODE
    terminal_id = ctx.text(41)
    counts = metrics.fallbacks_by_terminal
    counts[terminal_id] = counts.get(terminal_id, 0) + 1
    return None
