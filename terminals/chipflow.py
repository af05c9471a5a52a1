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

from posp.iso8583.message import Message
from terminals.chip import ChipCard

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
