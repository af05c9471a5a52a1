"""Steps wiring settlement and batch upload (``posp.pipeline.settlement``) into
the routes: parse F48 (a malformed one answers 30 through the codes table),
run the journal comparison, answer 00 with the result in F48 where the spec
asks for it (terminal-link §3.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from posp.iso8583.fields import SettlementF48, parse_upload_end_f48, parse_upload_f48
from posp.pipeline import settlement

if TYPE_CHECKING:
    from posp.pipeline.context import TxnContext
    from posp.pipeline.routes import Step


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


async def end_upload(ctx: TxnContext) -> str | None:
    """0320 202/207: mark the upload complete and close the batch."""
    assert ctx.terminal is not None
    total = parse_upload_end_f48(ctx.text(48))
    await settlement.end_upload(ctx.services.store, ctx.terminal.terminal_id, ctx.f60.batch, total)
    return "00"


SETTLE: Final[tuple[Step, ...]] = (settle,)
UPLOAD: Final[tuple[Step, ...]] = (upload,)
UPLOAD_END: Final[tuple[Step, ...]] = (end_upload,)
