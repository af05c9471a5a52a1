"""Card security steps: track data decryption (TDK) and PIN translation (TPK → ZPK).

Both go through the HSM; the switch never holds a clear key (terminal-link §6).

Invariants:
* F53 digit 3 = ``1`` means F35/F36 are encrypted under the terminal's TDK: the 8
  bytes ending just before the last byte of the packed track were 3DES-ECB
  encrypted (``posp.crypto.track``).  The clear tracks go to ``ctx.extras`` (never
  logged) and, when F2 is absent, the PAN is taken from the clear track 2.
* F52 is translated with CA: F53 digit 1 = ``2`` is ISO format 0 with the PAN
  (account = 12 rightmost PAN digits excluding the check digit), ``1`` without it
  (account ``000000000000``).  An undecipherable block raises ``HsmPinBlockError``
  (→ 99 and "sign in again" through the codes table).
* The CA may start early, alongside the request MAC check
  (``start_pin_translation``, called by ``checks.verify_mac``): that saves one
  HSM round trip per PIN transaction.  Its result (or error) is only looked at
  in ``translate_pin``, in the route's order, so a bad MAC still answers A0, a
  duplicate 94, and so on, whatever the PIN block; a translation whose inputs
  changed meanwhile (the PAN, the TPK, the ZPK) is done again.
"""

from __future__ import annotations

import asyncio
from typing import Final

from posp.crypto.pinblock import account12
from posp.errors import DecodeError
from posp.hsm.api import KEY_TDK, HsmClient
from posp.iso8583 import mask_pan
from posp.pipeline.context import TxnContext, card_pan, discard_outcome, pan_from_track2

EXTRA_TRACK2: Final = "track2"
EXTRA_TRACK3: Final = "track3"
EXTRA_PIN_BLOCK_ZPK: Final = "pin_block_zpk"
EXTRA_PIN_TASK: Final = "pin_translation"
PIN_FORMAT_ISO0: Final = "01"
FORMAT_WITHOUT_PAN: Final = "1"
NO_ACCOUNT: Final = "000000000000"
_BLOCK_BYTES: Final = 8
_MIN_TRACK_DIGITS: Final = 18


def security_control(ctx: TxnContext) -> str:
    """F53 (16 digits) or ``""`` when absent."""
    value = ctx.message.get(53)
    return value if isinstance(value, str) else ""


def tracks_encrypted(ctx: TxnContext) -> bool:
    control = security_control(ctx)
    return len(control) >= 3 and control[2] == "1"


async def decrypt_track(ctx: TxnContext, field: int) -> str | None:
    """The clear digits of track ``field`` (``=`` as the separator), or None when absent."""
    value = ctx.message.get(field)
    if not isinstance(value, str):
        return None
    nibbles = value.upper().replace("=", "D")
    if len(nibbles) < _MIN_TRACK_DIGITS:
        raise DecodeError("encrypted track too short", field=field)
    packed = bytearray.fromhex(nibbles + "0" * (len(nibbles) % 2))
    end = len(packed) - 1
    assert ctx.terminal is not None
    if ctx.terminal.tdk_lmk is None:
        # Encrypted tracks without a TDK: the terminal signed in without 004.
        raise DecodeError("track encrypted but no TDK issued", field=field)
    clear = await ctx.services.hsm.decrypt_data(
        KEY_TDK, ctx.terminal.tdk_lmk, packed[end - _BLOCK_BYTES : end].hex().upper()
    )
    packed[end - _BLOCK_BYTES : end] = bytes.fromhex(clear)
    return packed.hex().upper()[: len(nibbles)].replace("D", "=")


async def decrypt_tracks(ctx: TxnContext) -> str | None:
    """Clear F35/F36 into ``ctx.extras`` (decrypting with the TDK when F53 says so)."""
    message = ctx.message
    if not tracks_encrypted(ctx):
        for field, key in ((35, EXTRA_TRACK2), (36, EXTRA_TRACK3)):
            value = message.get(field)
            if isinstance(value, str):
                ctx.extras[key] = value
        return None
    track2 = await decrypt_track(ctx, 35)
    track3 = await decrypt_track(ctx, 36)
    if track2 is not None:
        ctx.extras[EXTRA_TRACK2] = track2
    if track3 is not None:
        ctx.extras[EXTRA_TRACK3] = track3
    if ctx.pan is None and track2 is not None:
        ctx.pan = pan_from_track2(track2)
        if ctx.pan is not None and ctx.entry_id is not None:
            # The pending entry was written before the PAN was known.
            await ctx.services.store.update_entry(
                ctx.entry_id,
                pan_masked=mask_pan(ctx.pan),
                pan_hash=ctx.services.pan_hash(ctx.pan),
            )
    return None


def pin_account(ctx: TxnContext, pan: str | None) -> str:
    """The 12-digit account field of the PIN block (DecodeError without a usable PAN)."""
    if security_control(ctx)[:1] == FORMAT_WITHOUT_PAN:
        return NO_ACCOUNT
    if pan is not None and len(pan) >= 13:
        return account12(pan)
    raise DecodeError("PIN block with PAN needs a card number", field=2)


async def _translate(hsm: HsmClient, tpk_lmk: str, zpk_lmk: str, block: str, account: str) -> str:
    translated = await hsm.translate_pin_tpk_to_zpk(
        tpk_lmk, zpk_lmk, block, account, src_format=PIN_FORMAT_ISO0, dst_format=PIN_FORMAT_ISO0
    )
    return translated.pin_block


def start_pin_translation(ctx: TxnContext) -> None:
    """Start the CA now when the route will translate F52 and every input is already
    known (clear tracks, a PAN, the TPK, a signed-on link); otherwise do nothing and
    ``translate_pin`` works as if this had never been called."""
    pin_block = ctx.message.get(52)
    link = ctx.services.link
    terminal = ctx.terminal
    if (
        not isinstance(pin_block, bytes)
        or len(pin_block) != _BLOCK_BYTES
        or translate_pin not in ctx.route.steps
        or tracks_encrypted(ctx)
        or link is None
        or not link.signed_on
        or terminal is None
        or terminal.tpk_lmk is None
    ):
        return
    try:
        account = pin_account(ctx, card_pan(ctx.message))
    except DecodeError:
        return  # translate_pin raises it in its turn
    inputs = (terminal.tpk_lmk, link.zpk_lmk, pin_block.hex().upper(), account)
    task = asyncio.ensure_future(_translate(ctx.services.hsm, *inputs))
    task.add_done_callback(discard_outcome)
    ctx.extras[EXTRA_PIN_TASK] = (inputs, task)


async def translate_pin(ctx: TxnContext) -> str | None:
    """F52 under the terminal's TPK → under the network's ZPK (HSM CA)."""
    pin_block = ctx.message.get(52)
    if pin_block is None:
        return None
    if not isinstance(pin_block, bytes) or len(pin_block) != _BLOCK_BYTES:
        raise DecodeError("PIN block must be 8 bytes", field=52)
    terminal = ctx.terminal
    assert terminal is not None and terminal.tpk_lmk is not None
    account = pin_account(ctx, ctx.pan)
    inputs = (terminal.tpk_lmk, ctx.services.link.zpk_lmk, pin_block.hex().upper(), account)
    early = ctx.extras.pop(EXTRA_PIN_TASK, None)
    if early is not None and early[0] == inputs:
        ctx.extras[EXTRA_PIN_BLOCK_ZPK] = await early[1]
    else:
        ctx.extras[EXTRA_PIN_BLOCK_ZPK] = await _translate(ctx.services.hsm, *inputs)
    return None
