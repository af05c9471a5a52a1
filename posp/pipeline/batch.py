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
from posp.pipeline import checks, chipadvice, settlement
from posp.pipeline.codes import ResponseCode as RC

if TYPE_CHECKING:
    from posp.pipeline.context import TxnContext
    from posp.pipeline.route import Step


_log = get_logger("posp.pipeline.batch")


async def settle(ctx: TxnContext) -> RC | None:
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
    return RC.APPROVED


async def upload(ctx: TxnContext) -> RC | None:
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
    return RC.APPROVED


def previous_batch(batch: str) -> str:
    """The batch before ``batch`` (n6): the inverse of ``settlement.next_batch``."""
    value = int(batch) - 1
    return f"{value if value >= 1 else 999_999:06d}"


async def check_upload_end_batch(ctx: TxnContext) -> RC | None:
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
            ctx.repeated = True  # repeats the upload end that closed its batch
            return None
    return code


async def end_upload(ctx: TxnContext) -> RC | None:
    """0320 202/207: mark the upload complete and close the batch."""
    assert ctx.terminal is not None
    if ctx.repeated:
        _log.info("upload end repeated for a closed batch", batch=ctx.f60.batch)
        return RC.APPROVED
    total = parse_upload_end_f48(ctx.text(48))
    await settlement.end_upload(ctx.services.store, ctx.terminal.terminal_id, ctx.f60.batch, total)
    report = await chipadvice.tc_report(ctx.services.store, ctx.terminal.terminal_id, ctx.f60.batch)
    if not report.complete:  # every approved chip transaction needs exactly one TC
        _log.warning(
            "batch closed with TC mismatches",
            batch=ctx.f60.batch,
            missing_tcs=len(report.missing),
            unexpected_tcs=len(report.unexpected),
        )
    return RC.APPROVED


SETTLE: Final[tuple[Step, ...]] = (settle,)
UPLOAD: Final[tuple[Step, ...]] = (upload,)
UPLOAD_END: Final[tuple[Step, ...]] = (end_upload,)
