"""Shared checks: small async steps returning None (continue) or a response code.

Order in a financial route (``posp.pipeline.routes.FINANCIAL_CHECKS``): who
the terminal is (97), its merchant (03), whether both may transact (58),
whether its working keys are usable (77, and the answer asks for a sign-in),
the route's fields (30), the batch (77), the MAC (A0).  Identity comes first
so that a format error from a known, signed-in terminal is answered with a
MAC it can verify.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from posp.hsm.api import KEY_TAK, MAC_ALG_CUP_ECB
from posp.iso8583 import terminal_mab
from posp.log import bind_transaction, get_logger
from posp.pipeline.context import TxnContext

ACTIVE: Final = "active"
MAC_BYTES: Final = 8

_log = get_logger("posp.pipeline.checks")


async def load_terminal(ctx: TxnContext) -> str | None:
    """97 when F41 names no registered terminal (or one without a TMK)."""
    terminal_id = ctx.text(41)
    bind_transaction(terminal_id=terminal_id)
    terminal = await ctx.services.store.get_terminal(terminal_id)
    if terminal is None:
        return "97"
    ctx.terminal = terminal
    return None


async def check_merchant(ctx: TxnContext) -> str | None:
    """03 when F42 is unknown or not the terminal's merchant."""
    assert ctx.terminal is not None
    merchant_id = ctx.text(42)
    if merchant_id != ctx.terminal.merchant_id:
        return "03"
    merchant = await ctx.services.store.get_merchant(merchant_id)
    if merchant is None:
        return "03"
    ctx.merchant = merchant
    return None


async def check_enabled(ctx: TxnContext) -> str | None:
    """58 when the terminal or its merchant is disabled."""
    assert ctx.terminal is not None and ctx.merchant is not None
    if ctx.terminal.status != ACTIVE or ctx.merchant.status != ACTIVE:
        return "58"
    return None


def keys_expired(generated_at: dt.datetime | None, now: dt.datetime, lifetime_s: float) -> bool:
    if generated_at is None:
        return True
    if generated_at.tzinfo is None:  # stores keep UTC; a naive value means UTC
        generated_at = generated_at.replace(tzinfo=dt.UTC)
    return (now - generated_at).total_seconds() > lifetime_s


async def check_working_keys(ctx: TxnContext) -> str | None:
    """77 and header digit 6 = 3 when the terminal has no keys or they expired."""
    terminal = ctx.terminal
    assert terminal is not None
    lifetime_s = ctx.services.settings.working_key_lifetime_s
    if (
        terminal.tpk_lmk is None
        or terminal.tak_lmk is None
        or keys_expired(terminal.keys_generated_at, ctx.now, lifetime_s)
    ):
        ctx.processing = "3"
        return "77"
    ctx.keys_usable = True
    return None


async def validate_fields(ctx: TxnContext) -> str | None:
    """30 when a field the route needs is missing (the codec already checked formats)."""
    present = ctx.message.fields
    missing = [n for n in sorted(ctx.route.required) if n not in present]
    missing += [min(group) for group in ctx.route.any_of if not group & present.keys()]
    if missing:
        _log.info("request lacks required fields", missing_fields=missing)
        return "30"
    return None


async def check_batch(ctx: TxnContext) -> str | None:
    """77 when 60.2 is not the terminal's open batch (it must sign in to learn it)."""
    assert ctx.terminal is not None
    if ctx.f60.batch != ctx.terminal.batch:
        ctx.processing = "3"
        return "77"
    return None


def mac_required(ctx: TxnContext) -> bool:
    from posp.pipeline.routes import MacPolicy

    policy = ctx.route.mac
    if policy is MacPolicy.SETTLEMENT:
        return ctx.services.settings.settlement.mac_on_settlement
    return policy is MacPolicy.REQUIRED


async def verify_mac(ctx: TxnContext) -> str | None:
    """A0 when F64 is missing or does not verify under the terminal's TAK (HSM M8)."""
    if not mac_required(ctx):
        return None
    assert ctx.terminal is not None and ctx.terminal.tak_lmk is not None
    mac = ctx.message.get(64)
    if not isinstance(mac, bytes) or len(mac) != MAC_BYTES:
        _log.warning("financial request without MAC")
        return "A0"
    verified = await ctx.services.hsm.verify_mac(
        KEY_TAK, ctx.terminal.tak_lmk, terminal_mab(ctx.body), mac, algorithm=MAC_ALG_CUP_ECB
    )
    if not verified:
        _log.warning("request MAC did not verify")
        return "A0"
    ctx.mac_verified = True
    return None


async def check_reversible_original(ctx: TxnContext) -> str | None:
    """12 when a reversal names a transaction type that is never reversed."""
    from posp.pipeline.routes import REVERSIBLE_MSG_TYPES

    return None if ctx.f60.msg_type in REVERSIBLE_MSG_TYPES else "12"
