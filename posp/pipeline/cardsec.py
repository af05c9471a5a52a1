"""Card security steps: track data decryption (TDK) and PIN translation (TPK → ZPK).

Both go through the HSM; the switch never holds a clear key (terminal-link §6).

Invariants:
* F53 digit 3 = ``1`` means F35/F36 are encrypted under the terminal's TDK: the 8
  bytes ending just before the last byte of the packed track were 3DES-ECB
  encrypted (``posp.crypto.track``).  The clear tracks go to ``ctx.track2``/``track3`` (never
  logged) and, when F2 is absent, the PAN is taken from the clear track 2.
* F52 is translated with CA: F53 digit 1 = ``2`` is ISO format 0 with the PAN
  (account = 12 rightmost PAN digits excluding the check digit), ``1`` without it
  (account ``000000000000``).  The network always gets format 0 WITH the PAN
  (network-link §6), so a block without the PAN needs two HSM commands, each
  with the one account number Thales gives CA/CC: CA TPK→ZPK from format 01
  (account zeros) to format 03 (no account), then CC ZPK→ZPK from 03 to 01 with
  the card's account.  Either way the PIN never leaves the HSM in the clear.
  An undecipherable block raises ``HsmPinBlockError`` (→ 99 and "sign in
  again" through the codes table).
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
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext, card_pan, discard_outcome, pan_from_track2

PIN_FORMAT_ISO0: Final = "01"
PIN_FORMAT_NO_ACCOUNT: Final = "03"  # PIN then F fill: the hop between two accounts
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


async def decrypt_tracks(ctx: TxnContext) -> RC | None:
    """Clear F35/F36 into ``ctx.track2``/``track3`` (decrypting with the TDK when F53
    says so)."""
    message = ctx.message
    if ctx.track2 is not None:
        return None  # cleared already (the risk step needed the card's hash early)
    if not tracks_encrypted(ctx):
        track2, track3 = message.get(35), message.get(36)
        ctx.track2 = track2 if isinstance(track2, str) else None
        ctx.track3 = track3 if isinstance(track3, str) else None
        return None
    track2 = await decrypt_track(ctx, 35)
    track3 = await decrypt_track(ctx, 36)
    ctx.track2, ctx.track3 = track2, track3
    if ctx.pan is None and track2 is not None:
        ctx.pan = pan_from_track2(track2)
        if ctx.pan is not None and ctx.entry_id is not None:
            # The pending entry was written before the PAN was known.
            await ctx.services.store.update_entry(
                ctx.entry_id,
                pan_masked=mask_pan(ctx.pan),
                pan_hash=ctx.pan_hash(ctx.pan),
            )
    return None


def pin_accounts(ctx: TxnContext, pan: str | None) -> tuple[str, str]:
    """The 12-digit account fields of the terminal's PIN block and of the network's
    (DecodeError naming F2 without a usable PAN: the network's block needs it)."""
    if pan is None or len(pan) < 13 or not pan.isdigit():
        raise DecodeError("a PIN block needs a card number (F2 or track 2)", field=2)
    account = account12(pan)
    if security_control(ctx)[:1] == FORMAT_WITHOUT_PAN:
        return NO_ACCOUNT, account
    return account, account


async def _translate(
    hsm: HsmClient, tpk_lmk: str, zpk_lmk: str, block: str, accounts: tuple[str, str]
) -> str:
    terminal_account, network_account = accounts
    if terminal_account == network_account:
        translated = await hsm.translate_pin_tpk_to_zpk(
            tpk_lmk,
            zpk_lmk,
            block,
            network_account,
            src_format=PIN_FORMAT_ISO0,
            dst_format=PIN_FORMAT_ISO0,
        )
        return translated.pin_block
    hop = await hsm.translate_pin_tpk_to_zpk(
        tpk_lmk,
        zpk_lmk,
        block,
        terminal_account,
        src_format=PIN_FORMAT_ISO0,
        dst_format=PIN_FORMAT_NO_ACCOUNT,
    )
    translated = await hsm.translate_pin_zpk_to_zpk(
        zpk_lmk,
        zpk_lmk,
        hop.pin_block,
        network_account,
        src_format=PIN_FORMAT_NO_ACCOUNT,
        dst_format=PIN_FORMAT_ISO0,
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
        accounts = pin_accounts(ctx, card_pan(ctx.message))
    except DecodeError:
        return  # translate_pin raises it in its turn
    inputs = (terminal.tpk_lmk, link.zpk_lmk, pin_block.hex().upper(), accounts)
    task = asyncio.ensure_future(_translate(ctx.services.hsm, *inputs))
    task.add_done_callback(discard_outcome)
    ctx.pin_task = (inputs, task)


async def translate_pin(ctx: TxnContext) -> RC | None:
    """F52 under the terminal's TPK → under the network's ZPK (HSM CA)."""
    pin_block = ctx.message.get(52)
    if pin_block is None:
        return None
    if not isinstance(pin_block, bytes) or len(pin_block) != _BLOCK_BYTES:
        raise DecodeError("PIN block must be 8 bytes", field=52)
    terminal, link = ctx.terminal, ctx.services.link
    assert terminal is not None and terminal.tpk_lmk is not None
    assert link is not None  # require_link ran before this step
    accounts = pin_accounts(ctx, ctx.pan)
    inputs = (terminal.tpk_lmk, link.zpk_lmk, pin_block.hex().upper(), accounts)
    early, ctx.pin_task = ctx.pin_task, None
    if early is not None and early[0] == inputs:
        ctx.pin_block_zpk = await early[1]
    else:
        ctx.pin_block_zpk = await _translate(ctx.services.hsm, *inputs)
    return None
