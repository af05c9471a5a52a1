"""Building the answer: echoed fields, the switch's own fields, header, MAC.

Rules (terminal-link §1, §3, §5):
* MTI = request MTI + 10; TPDU with destination and source swapped; header
  echoed with digit 6 = ``3`` for 77 / 99 / A0 and whenever the (loaded)
  terminal's working keys are missing or expired, echo and sign-off answers
  included; only a successful sign-in (which just issued keys) answers ``0``,
  or, like every other answer, what the terminal's management view decides:
  ``1`` parameters, ``4`` / ``5`` CAPK / AID, ``6`` software (``posp.tms.service``).
* Echo 2 (if sent), 3, 4, 11, 25, 41, 42, 49, 60; add 12, 13, 32, 39, 15 on
  card transactions, 37 once an RRN exists, and whatever the steps put into
  ``ctx.response`` (38, 44, 48, 54, 62, 63 ...).  A card transaction's answer
  always carries 44 and 63 (§3): from the network's answer when there is one;
  when the switch decided alone (25, 64, 91, 94, ...) 44 = blank issuer id +
  the switch's acquirer id and 63 = the card organisation told by the BIN
  (``card_org_for``; left out when no PAN is known or the BIN is unknown).
* F64 only when the route's MAC policy applies, the terminal's keys are
  usable and the code is not A0 (an A0 answer never carries F64).  The MAC is
  computed by the HSM (M6, algorithm 09, TAK) over the encoded answer: encode
  with a placeholder F64, take the MAB, replace the last 8 bytes.
* A step that knows the final code before its last store write may start the
  answer early (``start_answer``), so the answer's MAC is computed while the
  journal commits; ``take_answer`` uses it only when the request ended with
  that same code, else builds the answer afresh.  Either way the answer leaves
  only after the journal write (the engine awaits both first).
"""

from __future__ import annotations

import asyncio
from typing import Final

from posp.errors import EncodeError, HsmError
from posp.hsm.api import KEY_TAK, MAC_ALG_CUP_ECB
from posp.iso8583 import (
    Message,
    TerminalFrame,
    encode_terminal,
    reply_tpdu,
    response_header,
    terminal_mab,
)
from posp.iso8583.fields import render_f44
from posp.iso8583.message import FieldValue
from posp.log import get_logger
from posp.pipeline.checks import mac_required, working_keys_usable
from posp.pipeline.codes import SIGN_IN_AGAIN_CODES
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext, discard_outcome
from posp.txn import TxnType

ECHOED_FIELDS: Final = (2, 3, 4, 11, 25, 41, 42, 49, 60)
NO_MAC_CODE: Final = RC.MAC_FAILED
_MAC_PLACEHOLDER: Final = b"00000000"
#: The card organisations F63 may name (terminal-link §2).
CARD_ORGS: Final = frozenset({"CUP", "VIS", "MCC", "JCB", "AEX"})

_log = get_logger("posp.pipeline.respond")


def response_mti(mti: str) -> str:
    """Request MTI + 10 (0200 → 0210); a non-numeric MTI never reaches here."""
    return f"{(int(mti) + 10) % 10000:04d}"


def bare_answer(frame: TerminalFrame, code: str, processing: str = "0") -> bytes | None:
    """An answer built from the request alone, without the HSM or the store
    (load shedding, malformed fields): echoed fields + 39, no MAC.  None when
    even that cannot be encoded."""
    fields: dict[int, FieldValue] = {
        n: frame.message.fields[n] for n in ECHOED_FIELDS if n in frame.message.fields
    }
    fields[39] = str(code)  # a ResponseCode member: the codec takes plain str
    answer = TerminalFrame(
        reply_tpdu(frame.tpdu),
        response_header(frame.header, processing),
        Message(response_mti(frame.message.mti), fields),
    )
    try:
        return encode_terminal(answer)
    except EncodeError:
        return None


def card_org_for(pan: str | None) -> str | None:
    """The card organisation of a PAN by its BIN (CUP 62 and 81, Visa 4, Mastercard
    51-55 and 2221-2720, JCB 3528-3589, Amex 34/37), None when unknown."""
    if pan is None or len(pan) < 4 or not pan[:4].isdigit():
        return None
    head2, head4 = int(pan[:2]), int(pan[:4])
    if head2 in (62, 81):
        return "CUP"
    if pan[0] == "4":
        return "VIS"
    if 51 <= head2 <= 55 or 2221 <= head4 <= 2720:
        return "MCC"
    if 3528 <= head4 <= 3589:
        return "JCB"
    if head2 in (34, 37):
        return "AEX"
    return None


def _card_answer_fields(ctx: TxnContext, fields: dict[int, FieldValue]) -> None:
    """44 and 63 for a card transaction the network did not answer."""
    if 44 not in fields:
        fields[44] = render_f44("", ctx.services.settings.network.acquirer_id)
    if 63 not in fields:
        f2 = ctx.message.get(2)
        org = ctx.card_org or card_org_for(ctx.pan or (f2 if isinstance(f2, str) else None))
        if org is not None:
            fields[63] = org


def _answer_fields(ctx: TxnContext, code: str) -> dict[int, FieldValue]:
    request = ctx.message.fields
    fields: dict[int, FieldValue] = {n: request[n] for n in ECHOED_FIELDS if n in request}
    if ctx.response_f60 is not None:
        fields[60] = ctx.response_f60
    fields[12] = ctx.local_time
    fields[13] = ctx.local_date
    fields[32] = ctx.services.settings.network.acquirer_id
    fields[39] = str(code)
    if ctx.route.financial:
        fields[15] = ctx.settlement_date or ctx.local_date
    if ctx.rrn is not None:
        fields[37] = ctx.rrn
    if ctx.auth_code is not None and code == RC.APPROVED:
        fields[38] = ctx.auth_code
    fields.update(ctx.response)
    if ctx.route.financial:  # a card transaction (the routes table)
        _card_answer_fields(ctx, fields)
    return fields


def _processing(ctx: TxnContext, code: str) -> str:
    """Header digit 6 (see the module docstring)."""
    if code in SIGN_IN_AGAIN_CODES:
        return "3"
    signed_in = ctx.route.txn_type is TxnType.SIGN_IN and code == RC.APPROVED
    if ctx.terminal is None or ctx.keys_usable or signed_in:
        return _management_digit(ctx)
    return _management_digit(ctx) if working_keys_usable(ctx) else "3"


def _management_digit(ctx: TxnContext) -> str:
    """``ctx.processing`` when a step set it (``3``), else what the terminal's
    management view decided (``1`` / ``4`` / ``5`` / ``6`` / ``0``)."""
    view = ctx.tms_view
    return view.digit if ctx.processing == "0" and view is not None else ctx.processing


def _wants_mac(ctx: TxnContext, code: str) -> bool:
    return (
        code != NO_MAC_CODE
        and ctx.keys_usable
        and ctx.terminal is not None
        and ctx.terminal.tak_lmk is not None
        and mac_required(ctx)
    )


async def build_answer(ctx: TxnContext, code: str, *, mac: bool = True) -> bytes | None:
    """The encoded answer body (no LEN) for ``ctx`` with response code ``code``
    (``mac=False``: never MACed, e.g. after the HSM just failed on it)."""
    processing = _processing(ctx, code)
    fields = _answer_fields(ctx, code)
    want_mac = mac and _wants_mac(ctx, code)
    if want_mac:
        fields[64] = _MAC_PLACEHOLDER
    frame = TerminalFrame(
        reply_tpdu(ctx.frame.tpdu),
        response_header(ctx.frame.header, processing),
        Message(response_mti(ctx.message.mti), fields),
    )
    try:
        body = encode_terminal(frame)
    except EncodeError as exc:
        # As an unsigned answer: an approval answered so would not count at the
        # terminal, so the engine reverses it (posp.pipeline.delivery).
        _log.error("answer does not encode", field=exc.field, reason=exc.reason)
        ctx.answer_unsigned = True
        return bare_answer(ctx.frame, "96")
    if not want_mac:
        return body
    assert ctx.terminal is not None and ctx.terminal.tak_lmk is not None
    try:
        f64 = await ctx.services.hsm.generate_mac(
            KEY_TAK, ctx.terminal.tak_lmk, terminal_mab(body), algorithm=MAC_ALG_CUP_ECB
        )
    except HsmError as exc:
        # An approval answered so would not count at the terminal: the engine
        # reverses it and answers 96 instead (posp.pipeline.delivery).
        _log.error("answer MAC failed; answering without F64", error_type=type(exc).__name__)
        ctx.answer_unsigned = True
        del frame.message.fields[64]
        return encode_terminal(frame)
    return body[: -len(_MAC_PLACEHOLDER)] + f64


def start_answer(ctx: TxnContext, code: str) -> None:
    """Start building the answer for ``code`` now (see the module docstring)."""
    task = asyncio.ensure_future(build_answer(ctx, code))
    task.add_done_callback(discard_outcome)
    ctx.early_answer = (code, task)


async def take_answer(ctx: TxnContext, code: str) -> bytes | None:
    """The answer for ``code``: the early one when it was started for that code."""
    early, ctx.early_answer = ctx.early_answer, None
    if early is not None and early[0] == code:
        answer: bytes | None = await early[1]
        return answer
    return await build_answer(ctx, code)
