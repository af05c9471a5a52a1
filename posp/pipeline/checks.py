"""Shared checks: small async steps returning None (continue) or a response code.

Order in a financial route (``posp.pipeline.routes.FINANCIAL_CHECKS``): who
the terminal is (97), its merchant (03), whether both may transact (58),
whether its working keys are usable (77, and the answer asks for a sign-in),
the route's fields (30), the batch (77), the MAC (A0), then (card
transactions carrying F4) the amount (13).  Identity comes first so that a
format error from a known, signed-in terminal is answered with a MAC it can
verify; the amount only after the MAC, so an unauthenticated request gets A0.

Card transactions take registry rows from the store's cache when read at most
``registry_max_age_s`` ago (the setting; ``posp.store.registry_cache``): changes made through
this switch (sign-in keys, batch close, status) are seen at once; changes made
elsewhere (the admin CLI in another process, another instance on the same
PostgreSQL) within that bound.  Before a check refuses a request on a cached
row (58, 77, A0), the rows are read again once and the check repeated, so a
terminal that signed in or settled on another instance is never refused for
a stale copy; only a refusal decided elsewhere (disabling a terminal) may
take up to ``registry_max_age_s`` to apply.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from posp.hsm.api import KEY_TAK, MAC_ALG_CUP_ECB
from posp.iso8583 import terminal_mab
from posp.log import get_logger
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext
from posp.txn import MacPolicy

ACTIVE: Final = "active"
MAC_BYTES: Final = 8

_log = get_logger("posp.pipeline.checks")


def registry_max_age_s(ctx: TxnContext) -> float:
    """Card transactions may use cached rows; sign-in, settlement and the other
    management messages (rare, and about keys and batches) read the database."""
    return ctx.services.settings.registry_max_age_s if ctx.route.financial else 0.0


async def load_terminal(ctx: TxnContext) -> RC | None:
    """97 when F41 names no registered terminal (or one without a TMK)."""
    terminal_id = ctx.text(41)  # already bound to the log context by the engine
    terminal = await ctx.services.store.get_terminal(terminal_id, max_age_s=registry_max_age_s(ctx))
    if terminal is None:
        return RC.TERMINAL_UNKNOWN
    ctx.terminal = terminal
    return None


async def check_merchant(ctx: TxnContext) -> RC | None:
    """03 when F42 is unknown or not the terminal's merchant."""
    assert ctx.terminal is not None
    merchant_id = ctx.text(42)
    if merchant_id != ctx.terminal.merchant_id:
        return RC.INVALID_MERCHANT
    merchant = await ctx.services.store.get_merchant(merchant_id, max_age_s=registry_max_age_s(ctx))
    if merchant is None:
        return RC.INVALID_MERCHANT
    ctx.merchant = merchant
    return None


async def refresh_registry(ctx: TxnContext) -> bool:
    """Read the terminal and merchant from the database (once per request) before a
    check refuses on a possibly stale cached copy; True when they were read now."""
    if ctx.registry_fresh or ctx.terminal is None:
        return False
    ctx.registry_fresh = True
    store = ctx.services.store
    terminal = await store.get_terminal(ctx.terminal.terminal_id)
    if terminal is not None:
        ctx.terminal = terminal
    if ctx.merchant is not None:
        merchant = await store.get_merchant(ctx.merchant.merchant_id)
        if merchant is not None:
            ctx.merchant = merchant
    return True


def _enabled(ctx: TxnContext) -> bool:
    assert ctx.terminal is not None and ctx.merchant is not None
    return ctx.terminal.status == ACTIVE and ctx.merchant.status == ACTIVE


async def check_enabled(ctx: TxnContext) -> RC | None:
    """58 when the terminal or its merchant is disabled."""
    if _enabled(ctx) or (await refresh_registry(ctx) and _enabled(ctx)):
        return None
    return RC.NOT_PERMITTED_TERMINAL


def keys_expired(generated_at: dt.datetime | None, now: dt.datetime, lifetime_s: float) -> bool:
    if generated_at is None:
        return True
    if generated_at.tzinfo is None:  # stores keep UTC; a naive value means UTC
        generated_at = generated_at.replace(tzinfo=dt.UTC)
    return (now - generated_at).total_seconds() > lifetime_s


def working_keys_usable(ctx: TxnContext) -> bool:
    """The loaded terminal has a TPK and TAK, generated less than a key lifetime ago."""
    terminal = ctx.terminal
    assert terminal is not None
    lifetime_s = ctx.services.settings.working_key_lifetime_s
    return not (
        terminal.tpk_lmk is None
        or terminal.tak_lmk is None
        or keys_expired(terminal.keys_generated_at, ctx.now, lifetime_s)
    )


async def check_working_keys(ctx: TxnContext) -> RC | None:
    """77 and header digit 6 = 3 when the terminal has no keys or they expired."""
    if working_keys_usable(ctx) or (await refresh_registry(ctx) and working_keys_usable(ctx)):
        ctx.keys_usable = True
        return None
    ctx.processing = "3"
    return RC.SIGN_IN_AGAIN


async def validate_fields(ctx: TxnContext) -> RC | None:
    """30 when a field the route needs is missing (the codec already checked formats)."""
    present = ctx.message.fields
    missing = [n for n in sorted(ctx.route.required) if n not in present]
    missing += [min(group) for group in ctx.route.any_of if group.isdisjoint(present)]
    if missing:
        _log.info("request lacks required fields", missing_fields=missing)
        return RC.FORMAT_ERROR
    return None


async def check_batch(ctx: TxnContext) -> RC | None:
    """77 when 60.2 is not the terminal's open batch (it must sign in to learn it)."""
    assert ctx.terminal is not None
    if ctx.f60.batch == ctx.terminal.batch:
        return None
    if await refresh_registry(ctx) and ctx.f60.batch == ctx.terminal.batch:
        return None
    ctx.processing = "3"
    return RC.SIGN_IN_AGAIN


def mac_required(ctx: TxnContext) -> bool:
    policy = ctx.route.mac
    if policy is MacPolicy.SETTLEMENT:
        return ctx.services.settings.settlement.mac_on_settlement
    return policy is MacPolicy.REQUIRED


async def verify_mac(ctx: TxnContext) -> RC | None:
    """A0 when F64 is missing or does not verify under the terminal's TAK (HSM M8)."""
    if not mac_required(ctx):
        return None
    assert ctx.terminal is not None and ctx.terminal.tak_lmk is not None
    mac = ctx.message.get(64)
    if not isinstance(mac, bytes) or len(mac) != MAC_BYTES:
        _log.warning("financial request without MAC")
        return RC.MAC_FAILED
    tak_lmk = ctx.terminal.tak_lmk
    hsm = ctx.services.hsm
    mab = terminal_mab(ctx.body)
    verified = await hsm.verify_mac(KEY_TAK, tak_lmk, mab, mac, algorithm=MAC_ALG_CUP_ECB)
    if not verified and await refresh_registry(ctx):
        fresh_tak = ctx.terminal.tak_lmk
        if fresh_tak is not None and fresh_tak != tak_lmk:  # new keys signed in elsewhere
            verified = await hsm.verify_mac(KEY_TAK, fresh_tak, mab, mac, algorithm=MAC_ALG_CUP_ECB)
    if not verified:
        _log.warning("request MAC did not verify")
        return RC.MAC_FAILED
    return None


async def check_amount(ctx: TxnContext) -> RC | None:
    """13 (invalid amount) when a route that requires F4 carries a zero amount."""
    if 4 not in ctx.route.required:
        return None
    amount = ctx.message.get(4)
    if isinstance(amount, str) and amount.isdigit() and int(amount) > 0:
        return None
    _log.info("zero amount")
    return RC.INVALID_AMOUNT
