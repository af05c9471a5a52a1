"""Management steps: sign-in (0800 001/003/004), sign-off (0820 002), echo (0820 301).

Sign-in generates fresh working keys at every call (terminal-link §3.1): the
HSM makes PIK, MAK (and TDK for 004) under the LMK and under the terminal's
TMK; the store keeps the LMK forms; the terminal gets F62 and, in 60.2, the
batch it must use.  The switch never sees a clear key.

Device binding: when the registry holds a ``device_serial`` for the terminal,
the sign-in must carry F62 with exactly that serial (ASCII, surrounding
spaces/NULs ignored); a missing or different serial answers 58 (not permitted
to this terminal) and no keys are issued.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from posp.iso8583.fields import Field60
from posp.log import get_logger
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext

_SERIAL_PADDING: Final = b" \x00"

_log = get_logger("posp.pipeline.signin")


async def check_device_serial(ctx: TxnContext) -> RC | None:
    """58 when the terminal is bound to a device serial and F62 does not match it."""
    assert ctx.terminal is not None
    expected = ctx.terminal.device_serial
    if not expected:
        return None
    sent = ctx.message.get(62)
    serial = (
        sent.strip(_SERIAL_PADDING).decode("ascii", "replace") if isinstance(sent, bytes) else None
    )
    if serial != expected:
        _log.warning("sign-in from a device other than the bound one")
        return RC.NOT_PERMITTED_TERMINAL
    return None


async def issue_working_keys(ctx: TxnContext) -> RC | None:
    """New PIK/MAK(/TDK) under the TMK in F62; the terminal's batch in 60.2."""
    terminal = ctx.terminal
    assert terminal is not None
    if terminal.tmk_lmk is None:
        _log.warning("sign-in from a terminal without a TMK")
        return RC.TERMINAL_UNKNOWN
    issued = await ctx.services.keys.issue_working_keys(terminal.tmk_lmk, ctx.f60.net_code)
    generated_at = ctx.now
    await ctx.services.store.set_working_keys(
        terminal.terminal_id, issued.tpk_lmk, issued.tak_lmk, issued.tdk_lmk, generated_at
    )
    # A new object: the row read may be the store's cached copy, shared by requests.
    ctx.terminal = terminal = dataclasses.replace(
        terminal,
        tpk_lmk=issued.tpk_lmk,
        tak_lmk=issued.tak_lmk,
        tdk_lmk=issued.tdk_lmk,
        keys_generated_at=generated_at,
    )
    ctx.response[62] = issued.f62
    ctx.response_f60 = Field60("00", terminal.batch, ctx.f60.net_code).render()
    ctx.rrn = await ctx.services.ids.next_rrn()
    _log.info("terminal signed in", net_code=ctx.f60.net_code)
    return RC.APPROVED


async def sign_off(ctx: TxnContext) -> RC | None:
    """Clear the working keys: nothing but a sign-in works afterwards."""
    assert ctx.terminal is not None
    await ctx.services.store.clear_working_keys(ctx.terminal.terminal_id)
    ctx.processing = "3"  # its keys are gone now: the answer asks for a sign-in
    _log.info("terminal signed off")
    return RC.APPROVED


async def echo(ctx: TxnContext) -> RC | None:
    """Echo test: the switch is alive and knows the terminal."""
    return RC.APPROVED
