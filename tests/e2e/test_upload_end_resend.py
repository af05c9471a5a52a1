"""§3.3: an upload end (0320 202/207) resent for the batch it just closed (the
terminal lost the 0330) is answered 00 again without closing anything; an upload
end naming an older batch is still 77 (review finding 6)."""

from __future__ import annotations

import pytest

from posp.framing import frame_binary
from posp.iso8583 import decode_terminal
from posp.pipeline.batch import previous_batch
from terminals.cards import TerminalCard
from terminals.machine import TerminalMachine
from tests.e2e.conftest import Stack
from tests.e2e.tamper import send_raw


def upload_end(machine: TerminalMachine, batch: str, net_code: str) -> bytes:
    built = machine.echo()
    machine.in_flight = None
    message = decode_terminal(built[2:]).message
    message.mti = "0320"
    message[60] = "00" + batch + net_code
    message[48] = "0001"
    return frame_binary(machine.encode(message, mac=False))


@pytest.mark.parametrize("net_code", ["202", "207"])
async def test_a_resent_upload_end_for_the_batch_just_closed_is_answered_00(
    stack: Stack, card: TerminalCard, net_code: str
) -> None:
    terminal = await stack.terminal()
    machine = terminal.machine
    assert (await terminal.transact(lambda m: m.purchase(card, 500))).approved
    assert (await terminal.settle()).response_code == "00"
    assert stack.switch is not None and stack.store is not None
    answer = await send_raw(stack.switch.port, upload_end(machine, "000001", net_code))
    assert answer.message.get(39) == "00" and answer.header[5] == "0"
    registered = await stack.store.get_terminal("10000001")
    assert registered is not None and registered.batch == "000002"  # not closed again
    older = await send_raw(stack.switch.port, upload_end(machine, "999999", net_code))
    assert older.message.get(39) == "77"


def test_previous_batch_wraps_like_next_batch() -> None:
    assert previous_batch("000002") == "000001"
    assert previous_batch("000001") == "999999"
