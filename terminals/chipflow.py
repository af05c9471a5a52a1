"""The terminal's side of a chip transaction after the host answered (terminal-link §8):
the card's second GENERATE AC with the answer's F55 (tag 91, scripts 71/72).

Invariants:
* The card decides: a TC (CID 40) only when the host approved and the ARPC in
  tag 91 verifies; otherwise an AAC.  An approval the card turned down is
  reversed like a timeout (the pending reversal comes back with reason 06)
  and is not journaled.
* The scripts' results (DF31) wait in ``state.script_advices`` for the 0620
  advice; the TC upload F55 of an approved chip transaction in ``state.tcs``.
* ``corrupt_next_arpc`` (conformance) hands the card an answer whose tag 91
  is lost, as a line fault would: the ARPC cannot verify.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from posp.iso8583.message import FieldValue, Message
from terminals.chip import ChipCard
from terminals.config import CURRENCY_CNY
from terminals.requests import ENTRY_PREFIX
from terminals.txn import (
    NET_CODE_SCRIPT_ADVICE,
    NET_CODE_TC_BALANCED,
    NET_CODE_TC_UNBALANCED,
    TXN_TABLE,
    TxnKind,
)

if TYPE_CHECKING:
    from terminals.machine import InFlight, TerminalMachine

CARD_DECLINED_REASON = "06"


def finish_chip(
    machine: TerminalMachine, in_flight: InFlight, message: Message, code: str
) -> tuple[bool, str]:
    """Run the second GENERATE AC; (the card accepted the host's approval, detail)."""
    chip: ChipCard = in_flight.context["chip"]
    f55 = message.get(55)
    response_f55 = f55 if isinstance(f55, bytes) else None
    if machine.chip_faults.pop("arpc", False):
        response_f55 = None
    second = chip.second_generate_ac(response_f55, code.encode("ascii", "replace")[:2])
    if second.script_results:
        machine.state.script_advices[in_flight.trace] = second.advice_f55()
    if code != "00":
        return True, ""
    if not second.approved:
        pending = in_flight.context.get("pending_reversal")
        if pending is not None:
            pending.reason = CARD_DECLINED_REASON
            machine.state.pending_reversal = pending
        why = "ARPC did not verify" if not second.arpc_ok else "card declined"
        return False, f"{why}: AAC, reversal due"
    machine.state.tcs[in_flight.trace] = second.f55
    return True, "TC"


def script_advice(machine: TerminalMachine) -> bytes | None:
    """The next 0620 script result advice (60.3 951, F55 with DF31, F61 = batch +
    original trace + date), or None when no advice is due."""
    state = machine.state
    for trace, f55 in state.script_advices.items():
        original = state.journal.get(trace)
        date = original.date if original is not None else (state.clock_date or "0000")
        fields: dict[int, FieldValue] = {55: f55, 61: state.batch + trace + date}
        return machine._originate(
            TxnKind.SCRIPT_ADVICE,
            fields,
            net_code=NET_CODE_SCRIPT_ADVICE,
            context={"advice_trace": trace},
        )
    return None


def tc_upload(machine: TerminalMachine) -> bytes | None:
    """The next TC upload (0320, 60.3 203 balanced / 205 unbalanced) of an approved
    chip transaction, under the original's F11; None when none is left."""
    state, upload = machine.state, machine.state.upload
    if upload is None:
        return None
    for trace, f55 in list(state.tcs.items()):
        entry = state.journal.get(trace)
        if entry is None or entry.voided:
            del state.tcs[trace]  # not approved after all: nothing to upload
            continue
        spec = TXN_TABLE[TxnKind(entry.kind)]
        fields: dict[int, FieldValue] = {
            2: entry.pan,
            3: spec.proc_code or "000000",
            4: f"{entry.amount_minor:012d}",
            22: ENTRY_PREFIX.get(entry.entry_mode, "05") + "0",
            49: CURRENCY_CNY,
            55: f55,
        }
        code = NET_CODE_TC_BALANCED if upload.balanced else NET_CODE_TC_UNBALANCED
        return machine._originate(
            TxnKind.TC_UPLOAD,
            fields,
            net_code=code,
            mac=machine.config.mac_settlement,
            context={"tc_trace": trace},
            trace=trace,
        )
    return None


def on_advice_answer(machine: TerminalMachine, in_flight: InFlight, message: Message) -> None:
    machine.state.script_advices.pop(in_flight.context["advice_trace"], None)


def on_tc_answer(machine: TerminalMachine, in_flight: InFlight, message: Message) -> None:
    machine.state.tcs.pop(in_flight.context["tc_trace"], None)
