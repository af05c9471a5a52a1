"""The simulated POS terminal as a pure state machine (no sockets, no asyncio).

Build methods return a complete request frame (2-byte LEN included) and
remember it as the one request in flight; ``accept`` (or ``on_timeout`` /
``on_comms_error``) settles it and returns an ``Outcome``.

Invariants:

* At most one request is in flight; building another raises ``RequestInFlight``.
* F11 increments for every message originated, wrapping 999999 -> 000001; a
  reversal reuses the original's F11.
* A reversible request is saved as the pending reversal before it is sent
  (reason 98); an accepted answer clears it, a comms error turns the reason
  into 06 and a MAC failure into A0.  While a reversal is due, financial and
  settlement builds raise ``ReversalDue``: the caller sends ``reversal()``
  first.  Sign-in is allowed; its outcome says ``reversal_queued``.
* Any 0410 clears the pending reversal.
* 77 / 99 / A0 or header digit 6 = 3 drop the sign-in (``needs_sign_in``).
* Every answer's header digit 6 is kept in ``state.tms.processing``; the
  session runs the management dialogues it asks for (``terminals.management``).
  Sign-in and financial requests carry F59 when ``state.tms.identity`` is set.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from posp.crypto.mac import cup_ecb_mac
from posp.framing import frame_binary
from posp.iso8583 import TerminalFrame, decode_terminal, encode_terminal, terminal_mab
from posp.iso8583.fields import render_transfer_f62, render_upload_end_f48, render_upload_f48
from posp.iso8583.message import FieldValue, Message
from terminals.answers import settle_answer
from terminals.cards import TerminalCard
from terminals.chip import TerminalChipData
from terminals.chipflow import tc_upload
from terminals.chipwallet import chip_for
from terminals.config import CURRENCY_CNY, TerminalConfig
from terminals.journal import settlement_totals
from terminals.outcome import Event, Outcome
from terminals.requests import CHIP_READS, CONTACTLESS, FALLBACK, CardPresent, card_fields
from terminals.state import PendingReversal, TerminalState, next_trace_after
from terminals.txn import (
    NET_CODE_ECHO,
    NET_CODE_FINANCIAL,
    NET_CODE_SETTLEMENT,
    NET_CODE_SIGN_OFF,
    NET_CODE_UPLOAD_BALANCED,
    NET_CODE_UPLOAD_UNBALANCED,
    SIGN_IN_VARIANTS,
    TXN_TABLE,
    TxnKind,
)

UPLOAD_RECORDS_PER_MESSAGE = 8
MAC_PLACEHOLDER = b"00000000"
REVERSAL_STRIPPED_FIELDS = (26, 35, 36, 52, 53)
IC_READ_FAILED = "2"  # 60.5 on a fallback swipe
#: First presentments that run the card's first GENERATE AC, with their 9C.
CHIP_TXN_TYPES = {TxnKind.PURCHASE: "00", TxnKind.PREAUTH: "03", TxnKind.BALANCE: "31"}
_SHIFTED_HEX = bytes.maketrans(b"0123456789ABCDEF", b"123456789ABCDEF0")


class TerminalStateError(RuntimeError):
    """The caller asked for something the terminal cannot do in its state."""


class RequestInFlight(TerminalStateError):
    """A request is already waiting for its answer."""


class NotSignedIn(TerminalStateError):
    """Financial requests need working keys: sign in first."""


class ReversalDue(TerminalStateError):
    """A pending reversal must be sent (``reversal()``) before this request."""


class UnknownOriginal(TerminalStateError):
    """No approved journal entry for the trace a void / completion names."""


@dataclass(slots=True)
class InFlight:
    """The request awaiting its answer and what its answer handler needs."""

    kind: TxnKind
    message: Message
    trace: str
    context: dict[str, Any] = field(default_factory=dict)


class TerminalMachine:
    """One terminal: configuration (TMK, ids, TPDU/header) plus mutable state."""

    def __init__(self, config: TerminalConfig, state: TerminalState | None = None) -> None:
        self.config = config
        self.state = state if state is not None else TerminalState()
        self.in_flight: InFlight | None = None
        self._corrupt_next_mac = False
        #: Chip faults for conformance, consumed once: "arpc" loses the answer's tag 91.
        self.chip_faults: dict[str, bool] = {}

    # --- introspection -------------------------------------------------------

    @property
    def reversal_due(self) -> bool:
        """A reversal waits to be sent (its original is no longer in flight)."""
        return self.state.pending_reversal is not None and self.in_flight is None

    @property
    def upload_due(self) -> bool:
        """A settlement was answered and its batch upload has not finished."""
        return self.state.upload is not None

    def corrupt_next_mac(self) -> None:
        """Fault injection for conformance: the next MAC sent is wrong."""
        self._corrupt_next_mac = True

    # --- encoding ------------------------------------------------------------

    def _next_trace(self) -> str:
        self.state.last_trace = next_trace_after(self.state.last_trace)
        return f"{self.state.last_trace:06d}"

    def _f60(self, msg_type: str, net_code: str, extra: str | None = None) -> str:
        return (
            msg_type
            + self.state.batch
            + net_code
            + (self.config.f60_extra if extra is None else extra)
        )

    def encode(self, message: Message, *, mac: bool) -> bytes:
        """Body (no LEN) of ``message`` in this terminal's TPDU and header; with
        ``mac`` the F64 is computed over the MAB with the current MAK."""
        frame = TerminalFrame(self.config.tpdu, self.config.header, message)
        if not mac:
            return encode_terminal(frame)
        if self.state.mak is None:
            raise NotSignedIn("no MAK: sign in first")
        message[64] = MAC_PLACEHOLDER
        body = encode_terminal(frame)
        value = cup_ecb_mac(self.state.mak, terminal_mab(body))
        if self._corrupt_next_mac:
            self._corrupt_next_mac = False
            value = value.translate(_SHIFTED_HEX)  # still hex, never equal
        message[64] = value
        return body[:-8] + value

    def _originate(
        self,
        kind: TxnKind,
        fields: dict[int, FieldValue],
        *,
        net_code: str = NET_CODE_FINANCIAL,
        mac: bool | None = None,
        context: dict[str, Any] | None = None,
        f60_extra: str | None = None,
        trace: str | None = None,
    ) -> bytes:
        """Build and remember one request; ``trace`` reuses an original's F11 (TC upload)."""
        if self.in_flight is not None:
            raise RequestInFlight(f"{self.in_flight.kind.value} still awaits its answer")
        spec = TXN_TABLE[kind]
        trace = trace or self._next_trace()
        fields[11] = trace
        fields[41] = self.config.terminal_id
        fields[42] = self.config.merchant_id
        fields[60] = self._f60(spec.msg_type, net_code, f60_extra)
        identity = self.state.tms.identity
        if identity is not None and (spec.financial or kind is TxnKind.SIGN_IN):
            fields[59] = identity  # F59 A2 (terminal-link §10)
        if spec.proc_code is not None:
            fields[3] = spec.proc_code
        if spec.condition is not None:
            fields[25] = spec.condition
        message = Message(spec.mti, fields)
        body = self.encode(message, mac=spec.mac if mac is None else mac)
        if spec.reversible:
            self.state.pending_reversal = PendingReversal(kind.value, body)
        self.in_flight = InFlight(kind, message, trace, context or {})
        return frame_binary(body)

    # --- management ----------------------------------------------------------

    def sign_in(self, variant: str = "003") -> bytes:
        """0800 sign-in; ``variant`` is 60.3 (001 single keys, 003 double, 004 + TDK)."""
        if variant not in SIGN_IN_VARIANTS:
            raise ValueError(f"sign-in variant must be one of {SIGN_IN_VARIANTS}")
        fields: dict[int, FieldValue] = {63: self.config.operator}
        if self.config.device_serial:
            fields[62] = self.config.device_serial.encode("ascii")
        return self._originate(
            TxnKind.SIGN_IN, fields, net_code=variant, context={"variant": variant}
        )

    def management(self, kind: TxnKind, net_code: str, f62: bytes | None = None) -> bytes:
        """A terminal-management message (``MANAGEMENT_REQUEST`` 0800 or
        ``MANAGEMENT_REPORT`` 0820) with 60.3 ``net_code`` and optional F62."""
        fields: dict[int, FieldValue] = {} if f62 is None else {62: f62}
        return self._originate(kind, fields, net_code=net_code, context={"net_code": net_code})

    def sign_off(self) -> bytes:
        return self._originate(TxnKind.SIGN_OFF, {}, net_code=NET_CODE_SIGN_OFF)

    def echo(self) -> bytes:
        return self._originate(TxnKind.ECHO, {}, net_code=NET_CODE_ECHO)

    # --- financial -----------------------------------------------------------

    def _ready_for_financial(self) -> None:
        if not self.state.signed_in or self.state.mak is None:
            raise NotSignedIn("sign in before financial transactions")
        if self.reversal_due:
            raise ReversalDue("send the pending reversal first")
        if self.state.upload is not None:
            raise TerminalStateError("finish the batch upload first")

    def _card_fields(
        self, card: CardPresent, pin: str | None, amount_minor: int | None, kind: TxnKind
    ) -> dict[int, FieldValue]:
        encrypt = self.config.track_encryption and self.state.tdk is not None
        date_yymmdd = time.strftime("%y") + (self.state.clock_date or time.strftime("%m%d"))
        chip = chip_for(card.pan) if card.entry in CHIP_READS else None
        chip_type = CHIP_TXN_TYPES.get(kind)
        chip_data = None
        if chip is not None and chip_type is not None:
            chip_data = TerminalChipData(
                amount_minor or 0, date_yymmdd, os.urandom(4), chip_type, self.state.last_trace + 1
            )
        fields = card_fields(
            card,
            pin=pin,
            pik=self.state.pik,
            tdk=self.state.tdk if encrypt else None,
            amount_minor=amount_minor,
            date_yymmdd=date_yymmdd,
            chip=chip,
            chip_data=chip_data,
        )
        fields[49] = CURRENCY_CNY
        if amount_minor is not None:
            fields[4] = f"{amount_minor:012d}"
        return fields

    def _card_request(
        self,
        kind: TxnKind,
        card: TerminalCard | CardPresent,
        amount_minor: int | None,
        pin: str | None,
        entry: str,
        extra: dict[int, FieldValue] | None = None,
        context: dict[str, Any] | None = None,
    ) -> bytes:
        self._ready_for_financial()
        present = card if isinstance(card, CardPresent) else CardPresent.from_card(card, entry)
        if (
            present.entry == CONTACTLESS
            and (amount_minor or 0) <= self.config.contactless_no_pin_limit_minor
        ):
            pin = None  # a small contactless payment needs no PIN
        fields = self._card_fields(present, pin, amount_minor, kind)
        fields.update(extra or {})
        ctx = {"card": present, "amount_minor": amount_minor or 0, **(context or {})}
        if 55 in fields:
            ctx["chip"] = chip_for(present.pan)
        f60_extra = None
        if present.entry == FALLBACK:  # 60.4 as configured, 60.5 = 2: the chip read failed
            f60_extra = (self.config.f60_extra[:1] or "0") + IC_READ_FAILED
        return self._originate(kind, fields, context=ctx, f60_extra=f60_extra)

    def balance(
        self, card: TerminalCard, pin: str | None = None, entry: str = "magstripe"
    ) -> bytes:
        return self._card_request(TxnKind.BALANCE, card, None, pin, entry)

    def purchase(
        self,
        card: TerminalCard | CardPresent,
        amount_minor: int,
        pin: str | None = None,
        entry: str = "magstripe",
    ) -> bytes:
        return self._card_request(TxnKind.PURCHASE, card, amount_minor, pin, entry)

    def preauth(
        self,
        card: TerminalCard,
        amount_minor: int,
        pin: str | None = None,
        entry: str = "magstripe",
    ) -> bytes:
        return self._card_request(TxnKind.PREAUTH, card, amount_minor, pin, entry)

    def refund(
        self,
        card: TerminalCard,
        original_rrn: str,
        original_date: str,
        amount_minor: int,
        entry: str = "magstripe",
    ) -> bytes:
        """0220 refund of an earlier purchase named by its RRN and date (MMDD)."""
        extra: dict[int, FieldValue] = {37: original_rrn, 61: "000000000000" + original_date}
        return self._card_request(TxnKind.REFUND, card, amount_minor, None, entry, extra)

    def beneficiary_check(self, receiving: TerminalCard, entry: str = "magstripe") -> bytes:
        """0100/330000: the receiving card's 2/14/35; the answer's F63 names its holder."""
        return self._card_request(TxnKind.BENEFICIARY_CHECK, receiving, None, None, entry)

    def transfer(
        self,
        card: TerminalCard | CardPresent,
        receiving_pan: str,
        amount_minor: int,
        pin: str | None = None,
        entry: str = "magstripe",
    ) -> bytes:
        """0200/400000/66: the paying card (with PIN) and the receiving card in F62."""
        extra: dict[int, FieldValue] = {62: render_transfer_f62(receiving_pan)}
        return self._card_request(TxnKind.TRANSFER, card, amount_minor, pin, entry, extra)

    def _original(self, trace: str | int, kind: TxnKind, allow_voided: bool = False) -> Any:
        key = f"{int(trace):06d}"
        entry = self.state.journal.get(key)
        if entry is None or entry.kind != kind.value or (entry.voided and not allow_voided):
            raise UnknownOriginal(f"no approved {kind.value} with trace {key}")
        return entry

    def _follow_up(
        self,
        kind: TxnKind,
        original_kind: TxnKind,
        trace: str | int,
        amount_minor: int | None,
        with_rrn: bool,
        allow_voided: bool = False,
    ) -> bytes:
        """A request that names an approved original of this batch (void, completion)."""
        original = self._original(trace, original_kind, allow_voided)
        card = CardPresent(original.pan, original.expiry, original.track2, original.entry_mode)
        extra: dict[int, FieldValue] = {
            38: original.auth_code,
            61: original.batch + original.trace + original.date,
        }
        if with_rrn:
            extra[37] = original.rrn
        amount = original.amount_minor if amount_minor is None else amount_minor
        return self._card_request(
            kind, card, amount, None, card.entry, extra, {"original_trace": original.trace}
        )

    def purchase_void(self, trace_of_original: str | int, *, allow_voided: bool = False) -> bytes:
        """0200 void of an approved purchase; ``allow_voided`` sends it even for an
        already voided one (conformance: the switch must answer 12)."""
        return self._follow_up(
            TxnKind.PURCHASE_VOID, TxnKind.PURCHASE, trace_of_original, None, True, allow_voided
        )

    def transfer_void(self, trace_of_transfer: str | int, *, allow_voided: bool = False) -> bytes:
        """0200/200000/66 void of an approved transfer of this batch (37/61 of it)."""
        return self._follow_up(
            TxnKind.TRANSFER_VOID, TxnKind.TRANSFER, trace_of_transfer, None, True, allow_voided
        )

    def preauth_void(self, trace_of_preauth: str | int) -> bytes:
        return self._follow_up(TxnKind.PREAUTH_VOID, TxnKind.PREAUTH, trace_of_preauth, None, False)

    def completion(self, trace_of_preauth: str | int, amount_minor: int) -> bytes:
        return self._follow_up(
            TxnKind.COMPLETION, TxnKind.PREAUTH, trace_of_preauth, amount_minor, False
        )

    def completion_void(self, trace_of_completion: str | int) -> bytes:
        return self._follow_up(
            TxnKind.COMPLETION_VOID, TxnKind.COMPLETION, trace_of_completion, None, True
        )

    def reversal(self) -> bytes:
        """0400 for the pending reversal: the saved original minus 26/35/36/52/53,
        39 = reason, same F11, MAC'd with the current MAK."""
        pending = self.state.pending_reversal
        if pending is None or self.in_flight is not None:
            raise TerminalStateError("no reversal is due")
        if self.state.mak is None:
            raise NotSignedIn("a reversal needs a MAK: sign in first")
        original = decode_terminal(pending.original_body).message
        for n in (*REVERSAL_STRIPPED_FIELDS, 64):
            original.pop(n)
        original.mti = TXN_TABLE[TxnKind.REVERSAL].mti
        original[39] = pending.reason
        body = self.encode(original, mac=True)
        trace = original.text(11)
        self.in_flight = InFlight(TxnKind.REVERSAL, original, trace, {"kind": pending.kind})
        return frame_binary(body)

    # --- settlement ----------------------------------------------------------

    def settlement(self) -> bytes:
        """0500 with F48 totals from the local journal."""
        if self.reversal_due:
            raise ReversalDue("send the pending reversal before settlement")
        fields: dict[int, FieldValue] = {
            48: settlement_totals(list(self.state.journal.values())).render(),
            49: CURRENCY_CNY,
            63: self.config.operator,
        }
        return self._originate(
            TxnKind.SETTLEMENT, fields, net_code=NET_CODE_SETTLEMENT, mac=self.config.mac_settlement
        )

    def batch_upload(self) -> bytes | None:
        """The next batch-upload message (records, then the end message), or
        None when no upload is under way.  Resumes after the last acknowledged
        record, also after a restart from saved state."""
        upload = self.state.upload
        if upload is None:
            return None
        tc = tc_upload(self)  # the TCs of approved chip transactions go first
        if tc is not None:
            return tc
        mac = self.config.mac_settlement
        if upload.acked < len(upload.records):
            chunk = upload.records[upload.acked : upload.acked + UPLOAD_RECORDS_PER_MESSAGE]
            return self._originate(
                TxnKind.BATCH_UPLOAD,
                {48: render_upload_f48(chunk)},
                net_code=NET_CODE_SETTLEMENT,
                mac=mac,
                context={"records": len(chunk)},
            )
        end_code = NET_CODE_UPLOAD_BALANCED if upload.balanced else NET_CODE_UPLOAD_UNBALANCED
        return self._originate(
            TxnKind.BATCH_UPLOAD_END,
            {48: render_upload_end_f48(len(upload.records))},
            net_code=end_code,
            mac=mac,
        )

    # --- answers -------------------------------------------------------------

    def _take_in_flight(self) -> InFlight:
        if self.in_flight is None:
            raise TerminalStateError("no request is in flight")
        in_flight, self.in_flight = self.in_flight, None
        return in_flight

    def accept(self, body: bytes) -> Outcome:
        """Settle the request in flight with its answer (``body`` = after LEN)."""
        in_flight = self._take_in_flight()
        outcome = settle_answer(self, in_flight, body)
        _release_chip(in_flight)
        return outcome

    def accept_frame(self, frame: bytes) -> Outcome:
        """As ``accept`` for a frame that still carries its 2-byte LEN."""
        return self.accept(frame[2:])

    def on_timeout(self) -> Outcome:
        """No answer in time: a reversible request's reversal stays due (98)."""
        return self._unanswered(self._take_in_flight(), Event.TIMEOUT, "98")

    def on_comms_error(self, *, after_send: bool = True) -> Outcome:
        """The connection failed.  Before sending nothing happened (the trace is
        spent); after sending, the reversal reason becomes 06."""
        in_flight = self._take_in_flight()
        if not after_send:
            _release_chip(in_flight)
        if not after_send and in_flight.kind is not TxnKind.REVERSAL:
            if TXN_TABLE[in_flight.kind].reversible:
                self.state.pending_reversal = None
            return Outcome(in_flight.kind, in_flight.trace, Event.COMMS_ERROR, detail="not sent")
        return self._unanswered(in_flight, Event.COMMS_ERROR, "06")

    def _unanswered(self, in_flight: InFlight, event: Event, reason: str) -> Outcome:
        _release_chip(in_flight)
        pending = self.state.pending_reversal
        if pending is not None and TXN_TABLE[in_flight.kind].reversible:
            pending.reason = reason
        return Outcome(
            in_flight.kind,
            in_flight.trace,
            event,
            reversal_queued=self.state.pending_reversal is not None,
        )


def _release_chip(in_flight: InFlight) -> None:
    """A chip left without its second GENERATE AC (no usable answer) leaves the reader."""
    chip = in_flight.context.get("chip")
    if chip is not None and chip.in_use:
        chip.abandon()
