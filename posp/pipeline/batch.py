"""Steps wiring settlement and batch upload (``posp.pipeline.settlement``) into
the routes: parse F48 (a malformed one answers 30 through the codes table),
run the journal comparison, answer 00 with the result in F48 where the spec
asks for it (terminal-link §3.3).

An upload end is idempotent: resent for the batch just closed (the terminal
lost the 0330 and still names the old batch), it is answered 00 again without
closing anything; any other batch than the open one is still 77."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from posp.iso8583.fields import SettlementF48, parse_upload_end_f48, parse_upload_f48
from posp.log import get_logger
from posp.pipeline import checks, settlement

if TYPE_CHECKING:
    from posp.pipeline.context import TxnContext
    from posp.pipeline.routes import Step

#: ``ctx.extras`` key: this upload end repeats the one that closed its batch.
EXTRA_REPEATED_END: Final = "upload_end_repeated"

_log = get_logger("posp.pipeline.batch")


async def settle(ctx: TxnContext) -> str | None:
    """0500: compare the terminal's totals with the journal; echo F48 with results."""
    assert ctx.terminal is not None
    reported = SettlementF48.parse(ctx.text(48))
    outcome = await settlement.settle(
        ctx.services.store,
        ctx.terminal.terminal_id,
        ctx.terminal.merchant_id,
        ctx.f60.batch,
        reported,
    )
    ctx.response[48] = outcome.answer.render()
    return "00"


async def upload(ctx: TxnContext) -> str | None:
    """0320 201: record the batch-upload records (idempotent on resend)."""
    assert ctx.terminal is not None
    records = parse_upload_f48(ctx.text(48))
    await settlement.upload(
        ctx.services.store,
        ctx.terminal.terminal_id,
        ctx.f60.batch,
        records,
        ctx.services.pan_hash,
    )
    return "00"


def previous_batch(batch: str) -> str:
    """The batch before ``batch`` (n6): the inverse of ``settlement.next_batch``."""
    value = int(batch) - 1
    return f"{value if value >= 1 else 999_999:06d}"


async def check_upload_end_batch(ctx: TxnContext) -> str | None:
    """``checks.check_batch``, but the batch just closed by a completed upload is
    accepted too (a resent upload end, see the module docstring)."""
    processing = ctx.processing
    code = await checks.check_batch(ctx)
    if code is None:
        return None
    assert ctx.terminal is not None
    if ctx.f60.batch == previous_batch(ctx.terminal.batch):
        closed = await ctx.services.store.get_settlement(ctx.terminal.terminal_id, ctx.f60.batch)
        if closed is not None and closed.upload_complete:
            ctx.processing = processing
            ctx.extras[EXTRA_REPEATED_END] = True
            return None
    return code


async def end_upload(ctx: TxnContext) -> str | None:
    """0320 202/207: mark the upload complete and close the batch."""
    assert ctx.terminal is not None
    if ctx.extras.get(EXTRA_REPEATED_END):
        _log.info("upload end repeated for a closed batch", batch=ctx.f60.batch)
        return "00"
    total = parse_upload_end_f48(ctx.text(48))
    await settlement.end_upload(ctx.services.store, ctx.terminal.terminal_id, ctx.f60.batch, total)
    return "00"


SETTLE: Final[tuple[Step, ...]] = (settle,)
UPLOAD: Final[tuple[Step, ...]] = (upload,)
UPLOAD_END: Final[tuple[Step, ...]] = (end_upload,)
