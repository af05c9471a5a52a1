"""How the terminal settles a request with the answer it received.

Checks run in this order: the bytes decode; the answer is the one expected
(MTI + 10, same F11 and F41); the MAC verifies where one is due; then the
per-kind handler updates the state (keys and batch on sign-in, journal on
approvals, upload progress, batch + 1 after the upload's end message).

Invariants: a MAC failure never journals anything and turns the pending
reversal's reason into A0; a 0410 clears the pending reversal whatever its
39 or MAC; 77 / 99 / A0 or header digit 6 = 3 drop the sign-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from posp.crypto.keyblock import unwrap_f62
from posp.crypto.mac import cup_ecb_mac
from posp.errors import CheckValueMismatch, CodecError
from posp.iso8583 import TerminalFrame, decode_terminal, terminal_mab
from posp.iso8583.fields import Field60, SettlementF48
from posp.iso8583.message import Message
from terminals.chipflow import finish_chip, on_advice_answer, on_tc_answer
from terminals.journal import JournalEntry, card_class, upload_records
from terminals.outcome import Event, Outcome
from terminals.state import UploadProgress
from terminals.txn import APPROVED, RESIGN_CODES, TXN_TABLE, VOID_TARGETS, TxnKind

if TYPE_CHECKING:
    from terminals.machine import InFlight, TerminalMachine

RESIGN_PROCESSING_DIGIT = "3"
BALANCED = "1"


def response_mti(request_mti: str) -> str:
    return f"{int(request_mti) + 10:04d}"


def _text(message: Message, n: int) -> str:
    value = message.get(n)
    return value if isinstance(value, str) else ""


def _fail(
    machine: TerminalMachine,
    in_flight: InFlight,
    event: Event,
    reason: str,
    detail: str,
    message: Message | None = None,
) -> Outcome:
    pending = machine.state.pending_reversal
    if in_flight.kind is TxnKind.REVERSAL:
        # Any 0410 clears it; a garbled one does not count as a 0410.
        pass
    elif pending is not None and TXN_TABLE[in_flight.kind].reversible:
        pending.reason = reason
    needs_sign_in = event is Event.MAC_FAILURE
    if needs_sign_in:
        machine.state.signed_in = False
    return Outcome(
        in_flight.kind,
        in_flight.trace,
        event,
        response_code=_text(message, 39) or None if message is not None else None,
        message=message,
        needs_sign_in=needs_sign_in,
        reversal_queued=machine.state.pending_reversal is not None,
        detail=detail,
    )


def _mac_ok(machine: TerminalMachine, in_flight: InFlight, body: bytes, message: Message) -> bool:
    spec = TXN_TABLE[in_flight.kind]
    mac_due = spec.mac or (
        machine.config.mac_settlement
        and in_flight.kind in (TxnKind.SETTLEMENT, TxnKind.BATCH_UPLOAD, TxnKind.BATCH_UPLOAD_END)
    )
    if not mac_due or machine.state.mak is None:
        return True
    received = message.get(64)
    if received is None:
        # Declines from a switch that cannot MAC (unknown terminal, no keys,
        # A0) carry no F64; an approval always must.
        return _text(message, 39) != APPROVED
    return received == cup_ecb_mac(machine.state.mak, terminal_mab(body))


def settle_answer(machine: TerminalMachine, in_flight: InFlight, body: bytes) -> Outcome:
    """Decode, correlate, verify and apply one answer."""
    try:
        frame = decode_terminal(body)
    except CodecError as exc:
        return _fail(machine, in_flight, Event.BAD_RESPONSE, "06", f"undecodable answer: {exc}")
    message = frame.message
    expected_mti = response_mti(in_flight.message.mti)
    if message.mti != expected_mti or _text(message, 11) != in_flight.trace:
        return _fail(
            machine,
            in_flight,
            Event.BAD_RESPONSE,
            "06",
            f"answer {message.mti}/{_text(message, 11)} does not match the request",
        )
    if in_flight.kind is TxnKind.REVERSAL:
        machine.state.pending_reversal = None
    elif not _mac_ok(machine, in_flight, body, message):
        return _fail(machine, in_flight, Event.MAC_FAILURE, "A0", "response MAC failed", message)
    elif TXN_TABLE[in_flight.kind].reversible:
        in_flight.context["pending_reversal"] = machine.state.pending_reversal
        machine.state.pending_reversal = None
    return _apply(machine, in_flight, frame)


def _apply(machine: TerminalMachine, in_flight: InFlight, frame: TerminalFrame) -> Outcome:
    message = frame.message
    code = _text(message, 39)
    approved = code == APPROVED
    handler = _HANDLERS.get(in_flight.kind)
    detail, balanced = "", None
    if "chip" in in_flight.context:  # the card's second GENERATE AC has the last word
        card_ok, detail = finish_chip(machine, in_flight, message, code)
        approved = approved and card_ok
    if approved and handler is not None:
        try:
            handled, balanced = handler(machine, in_flight, message)
            detail = handled or detail
        except (CodecError, CheckValueMismatch, KeyError, ValueError) as exc:
            approved, detail = False, f"{type(exc).__name__}: {exc}"
    machine.state.tms.processing = frame.header[5:6]  # what terminal management asks next
    needs_sign_in = code in RESIGN_CODES or frame.header[5:6] == RESIGN_PROCESSING_DIGIT
    if in_flight.kind is TxnKind.SIGN_IN and not approved:
        needs_sign_in = True
    if needs_sign_in:
        machine.state.signed_in = False
    return Outcome(
        in_flight.kind,
        in_flight.trace,
        Event.RESPONSE,
        response_code=code or None,
        approved=approved,
        message=message,
        needs_sign_in=needs_sign_in,
        reversal_queued=machine.reversal_due,
        balanced=balanced,
        detail=detail,
    )


Handled = tuple[str, bool | None]


def _on_sign_in(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    variant = in_flight.context["variant"]
    key_block = message.get(62)
    if not isinstance(key_block, bytes):
        raise ValueError("sign-in answer has no key block")
    try:
        keys = unwrap_f62(variant, key_block, machine.config.tmk)
    except CheckValueMismatch:
        machine.state.signed_in = False
        raise
    state = machine.state
    state.pik, state.mak, state.tdk = keys.pik, keys.mak, keys.tdk
    state.key_variant = variant
    state.batch = Field60.parse(message.text(60)).batch
    state.clock_time = _text(message, 12)
    state.clock_date = _text(message, 13)
    state.signed_in = True
    return "", None


def _on_sign_off(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    machine.state.signed_in = False
    return "", None


def _journal(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    card = in_flight.context["card"]
    machine.state.journal[in_flight.trace] = JournalEntry(
        kind=in_flight.kind.value,
        trace=in_flight.trace,
        batch=machine.state.batch,
        pan=card.pan,
        expiry=card.expiry,
        track2=card.track2,
        entry_mode=card.entry,
        amount_minor=int(in_flight.context["amount_minor"]),
        rrn=_text(message, 37),
        auth_code=_text(message, 38),
        date=_text(message, 13) or machine.state.clock_date,
        card_class=card_class(_text(message, 63)[:3]),
    )
    preauth = machine.state.journal.get(in_flight.context.get("original_trace", ""))
    if in_flight.kind is TxnKind.COMPLETION and preauth is not None:
        preauth.completed = True
    if in_flight.kind is TxnKind.REFUND:
        original_rrn = in_flight.message.get(37)
        for entry in machine.state.journal.values():
            if entry.kind == TxnKind.PURCHASE.value and entry.rrn == original_rrn:
                entry.refunded_minor += int(in_flight.context["amount_minor"])
                break
    return "", None


def _void(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    original = machine.state.journal.get(in_flight.context["original_trace"])
    if original is not None and original.kind == VOID_TARGETS[in_flight.kind].value:
        original.voided = True
    return "", None


def _on_settlement(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    totals = SettlementF48.parse(message.text(48))
    balanced = totals.domestic.result == BALANCED and totals.foreign.result == BALANCED
    records = upload_records(list(machine.state.journal.values()))
    machine.state.upload = UploadProgress(records, 0, balanced)
    return ("balanced" if balanced else "unbalanced"), balanced


def _on_upload(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    upload = machine.state.upload
    if upload is not None:
        upload.acked += int(in_flight.context["records"])
    return "", None


def _on_upload_end(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    state = machine.state
    state.batch = f"{int(state.batch) % 999999 + 1:06d}"
    state.journal.clear()
    state.upload = None
    return "batch closed", None


def _on_script_advice(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    on_advice_answer(machine, in_flight, message)
    return "", None


def _on_tc(machine: TerminalMachine, in_flight: InFlight, message: Message) -> Handled:
    on_tc_answer(machine, in_flight, message)
    return "", None


_HANDLERS: dict[TxnKind, Callable[[TerminalMachine, InFlight, Message], Handled]] = {
    TxnKind.SIGN_IN: _on_sign_in,
    TxnKind.SIGN_OFF: _on_sign_off,
    TxnKind.PURCHASE: _journal,
    TxnKind.REFUND: _journal,
    TxnKind.PREAUTH: _journal,
    TxnKind.COMPLETION: _journal,
    TxnKind.TRANSFER: _journal,
    TxnKind.TRANSFER_VOID: _void,
    TxnKind.PURCHASE_VOID: _void,
    TxnKind.PREAUTH_VOID: _void,
    TxnKind.COMPLETION_VOID: _void,
    TxnKind.SETTLEMENT: _on_settlement,
    TxnKind.BATCH_UPLOAD: _on_upload,
    TxnKind.BATCH_UPLOAD_END: _on_upload_end,
    TxnKind.SCRIPT_ADVICE: _on_script_advice,
    TxnKind.TC_UPLOAD: _on_tc,
}
