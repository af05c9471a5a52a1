"""The pure terminal state machine against a pure fake switch responder."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from posp.iso8583 import decode_terminal
from posp.iso8583.fields import SettlementF48, parse_upload_end_f48, parse_upload_f48
from posp.iso8583.message import Message
from posp.iso8583.tlv import F55Use, decode_f55, first_missing_tag
from terminals.cards import TerminalCard
from terminals.config import TerminalConfig
from terminals.machine import NotSignedIn, ReversalDue, TerminalMachine, UnknownOriginal
from terminals.outcome import Event
from terminals.state import load_terminal, save_terminal
from terminals.txn import TxnKind
from tests.terminals.fakeswitch import KEYS, TMK, FakeSwitch

CUP_CARD = TerminalCard("6225880000000001", "2812", "123456")
VISA_CARD = TerminalCard("4761340000000019", "2812", "1234", card_org="VIS")


def new_machine(**config: Any) -> TerminalMachine:
    return TerminalMachine(TerminalConfig("12345678", "123456789012345", TMK, **config))


def request_of(frame: bytes) -> Message:
    return decode_terminal(frame[2:]).message


def roundtrip(machine: TerminalMachine, switch: FakeSwitch, frame: bytes) -> Any:
    answer = switch.answer(frame[2:])
    assert answer is not None
    return machine.accept(answer)


@pytest.fixture
def switch() -> FakeSwitch:
    return FakeSwitch()


@pytest.fixture
def signed_in(switch: FakeSwitch) -> TerminalMachine:
    machine = new_machine()
    outcome = roundtrip(machine, switch, machine.sign_in("003"))
    assert outcome.approved
    return machine


def test_signin_and_purchase_frames_match_vectors(vectors: dict[str, Any]) -> None:
    """Given the vector's inputs, the machine builds the vector's bytes exactly."""
    machine = TerminalMachine(TerminalConfig("12345678", "123456789012345", TMK))
    assert machine.sign_in("003").hex().upper() == vectors["frame_signin_0800"]["hex"]
    machine.in_flight = None
    vec = vectors["frame_purchase_0200"]
    machine.state.signed_in = True
    machine.state.pik, machine.state.mak = bytes.fromhex(vec["pik"]), bytes.fromhex(vec["mak"])
    frame = machine.purchase(CUP_CARD, 10000, pin=vec["pin"])
    assert frame.hex().upper() == vec["hex"]


@pytest.mark.parametrize("variant", ["001", "003", "004"])
def test_signin_unwraps_keys_sets_batch_and_clock(switch: FakeSwitch, variant: str) -> None:
    machine = new_machine()
    outcome = roundtrip(machine, switch, machine.sign_in(variant))
    assert outcome.approved and not outcome.needs_sign_in
    assert machine.state.signed_in
    assert machine.state.pik == KEYS[variant].pik
    assert machine.state.mak == KEYS[variant].mak
    assert machine.state.tdk == KEYS[variant].tdk
    assert machine.state.batch == "000042"
    assert (machine.state.clock_date, machine.state.clock_time) == ("0612", "101500")


def test_signin_fails_on_check_value_mismatch(switch: FakeSwitch) -> None:
    """A key block whose CV does not match the decrypted key fails the sign-in."""
    machine = new_machine()
    body = switch.answer(machine.sign_in("003")[2:])
    assert body is not None
    frame = decode_terminal(body)
    f62 = bytearray(frame.message[62])  # type: ignore[arg-type]
    f62[17] ^= 0xFF  # inside the PIK's CV
    tampered = body.replace(bytes(frame.message[62]), bytes(f62))  # type: ignore[arg-type]
    outcome = machine.accept(tampered)
    assert not outcome.approved and outcome.needs_sign_in
    assert "CheckValueMismatch" in outcome.detail
    assert not machine.state.signed_in


def test_trace_wraps_from_999999_to_000001(signed_in: TerminalMachine) -> None:
    signed_in.state.last_trace = 999998
    assert request_of(signed_in.echo())[11] == "999999"
    signed_in.in_flight = None
    assert request_of(signed_in.echo())[11] == "000001"


def test_purchase_with_pin_carries_pin_block_and_mac(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    frame = signed_in.purchase(CUP_CARD, 1234, pin="123456")
    req = request_of(frame)
    assert req[22] == "021" and req[26] == "12" and req[53] == "2600000000000000"
    outcome = roundtrip(signed_in, switch, frame)
    assert outcome.approved and outcome.event is Event.RESPONSE
    assert not signed_in.state.pending_reversal
    assert signed_in.state.journal[req.text(11)].amount_minor == 1234


def test_ic_purchase_without_pin_sends_chip_data(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    """A card of the lab chip file: F23 = its PSN, F55 = its first GENERATE AC."""
    chip_card = TerminalCard("6225880000000000010", "2812", "123456")
    req = request_of(signed_in.purchase(chip_card, 500, entry="ic"))
    assert req[22] == "052" and req[23] == "001" and 52 not in req
    assert first_missing_tag(decode_f55(bytes(req[55])), F55Use.PURCHASE) is None  # type: ignore[arg-type]


def test_a_chip_read_of_a_card_without_a_chip_carries_no_f55(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    req = request_of(signed_in.purchase(CUP_CARD, 500, entry="ic"))
    assert req[22] == "052" and 55 not in req


def test_timeout_queues_reversal_sent_before_next_transaction(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    original = request_of(signed_in.purchase(CUP_CARD, 700, pin="123456"))
    outcome = signed_in.on_timeout()
    assert outcome.event is Event.TIMEOUT and outcome.reversal_queued
    with pytest.raises(ReversalDue):
        signed_in.purchase(CUP_CARD, 100)
    frame = signed_in.reversal()
    rev = request_of(frame)
    assert rev.mti == "0400" and rev[11] == original[11] and rev[39] == "98"
    assert not any(n in rev for n in (26, 35, 36, 52, 53))
    assert rev[4] == original[4] and 64 in rev
    result = roundtrip(signed_in, switch, frame)
    assert result.kind is TxnKind.REVERSAL and not signed_in.reversal_due
    signed_in.purchase(CUP_CARD, 100)  # allowed again


def test_any_0410_clears_the_reversal_even_a_decline(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    signed_in.purchase(CUP_CARD, 700)
    signed_in.on_timeout()
    switch.code = "25"
    roundtrip(signed_in, switch, signed_in.reversal())
    assert signed_in.state.pending_reversal is None


def test_reversal_pending_is_announced_at_signin_and_blocks_settlement(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    signed_in.purchase(CUP_CARD, 700)
    signed_in.on_timeout()
    with pytest.raises(ReversalDue):
        signed_in.settlement()
    outcome = roundtrip(signed_in, switch, signed_in.sign_in("003"))
    assert outcome.approved and outcome.reversal_queued and signed_in.reversal_due


def test_comms_error_after_send_reverses_with_06(signed_in: TerminalMachine) -> None:
    signed_in.purchase(CUP_CARD, 700)
    signed_in.on_comms_error(after_send=True)
    assert request_of(signed_in.reversal())[39] == "06"


def test_comms_error_before_send_queues_nothing(signed_in: TerminalMachine) -> None:
    signed_in.purchase(CUP_CARD, 700)
    outcome = signed_in.on_comms_error(after_send=False)
    assert not outcome.reversal_queued and not signed_in.reversal_due


def test_response_mac_failure_reverses_with_a0_and_requires_signin(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    switch.bad_mac = True
    outcome = roundtrip(signed_in, switch, signed_in.purchase(CUP_CARD, 700))
    assert outcome.event is Event.MAC_FAILURE and not outcome.approved
    assert outcome.needs_sign_in and outcome.reversal_queued
    assert not signed_in.state.journal
    assert request_of(signed_in.reversal())[39] == "A0"


@pytest.mark.parametrize("kind", ["refund", "balance"])
def test_refunds_and_balance_inquiries_are_never_reversed(
    signed_in: TerminalMachine, kind: str
) -> None:
    if kind == "refund":
        signed_in.refund(CUP_CARD, "000000000001", "0612", 100)
    else:
        signed_in.balance(CUP_CARD, pin="123456")
    assert not signed_in.on_timeout().reversal_queued


@pytest.mark.parametrize("code", ["77", "99", "A0"])
def test_resign_codes_require_signin(
    switch: FakeSwitch, signed_in: TerminalMachine, code: str
) -> None:
    switch.code = code
    outcome = roundtrip(signed_in, switch, signed_in.purchase(CUP_CARD, 100))
    assert outcome.response_code == code and outcome.needs_sign_in
    with pytest.raises(NotSignedIn):
        signed_in.purchase(CUP_CARD, 100)


def test_header_processing_digit_3_requires_signin(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    switch.processing = "3"
    outcome = roundtrip(signed_in, switch, signed_in.echo())
    assert outcome.needs_sign_in and not signed_in.state.signed_in


def test_void_marks_original_and_double_void_is_refused_locally(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    frame = signed_in.purchase(CUP_CARD, 900)
    trace = request_of(frame).text(11)
    roundtrip(signed_in, switch, frame)
    void = request_of(frame := signed_in.purchase_void(trace))
    assert void[61] == signed_in.state.batch + trace + "0612" and void[4] == "000000000900"
    assert void[37] == signed_in.state.journal[trace].rrn
    assert roundtrip(signed_in, switch, frame).approved
    assert signed_in.state.journal[trace].voided
    with pytest.raises(UnknownOriginal):
        signed_in.purchase_void(trace)


def _approve(machine: TerminalMachine, switch: FakeSwitch, frame: bytes) -> str:
    assert roundtrip(machine, switch, frame).approved
    return request_of(frame).text(11)


def test_settlement_totals_split_domestic_and_foreign(
    switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    _approve(signed_in, switch, signed_in.purchase(CUP_CARD, 1000))
    voided = _approve(signed_in, switch, signed_in.purchase(CUP_CARD, 5000))
    _approve(signed_in, switch, signed_in.purchase_void(voided))
    _approve(signed_in, switch, signed_in.refund(CUP_CARD, "000000000001", "0612", 300))
    switch.card_org = "VIS"
    pre = _approve(signed_in, switch, signed_in.preauth(VISA_CARD, 2000))
    _approve(signed_in, switch, signed_in.completion(pre, 2100))
    f48 = SettlementF48.parse(request_of(signed_in.settlement()).text(48))
    d, f = f48.domestic, f48.foreign
    assert (d.debit_amount_minor, d.debit_count, d.credit_amount_minor, d.credit_count) == (
        1000,
        1,
        300,
        1,
    )
    assert (f.debit_amount_minor, f.debit_count, f.credit_amount_minor, f.credit_count) == (
        2100,
        1,
        0,
        0,
    )


def _fill(machine: TerminalMachine, switch: FakeSwitch, count: int) -> None:
    for i in range(count):
        _approve(machine, switch, machine.purchase(CUP_CARD, 100 + i))


@pytest.mark.parametrize(("result", "end_code"), [("1", "207"), ("2", "202")])
def test_settlement_then_upload_in_chunks_of_8_then_end_message(
    switch: FakeSwitch, signed_in: TerminalMachine, result: str, end_code: str
) -> None:
    switch.settlement_result = result
    _fill(signed_in, switch, 10)
    batch = signed_in.state.batch
    outcome = roundtrip(signed_in, switch, signed_in.settlement())
    assert outcome.balanced is (result == "1")
    sizes = []
    while (frame := signed_in.batch_upload()) is not None:
        req = request_of(frame)
        if req.text(60)[8:11] == "201":
            sizes.append(len(parse_upload_f48(req.text(48))))
        else:
            assert req.text(60)[8:11] == end_code
            assert parse_upload_end_f48(req.text(48)) == 10
        roundtrip(signed_in, switch, frame)
    assert sizes == [8, 2]
    assert signed_in.state.batch == f"{int(batch) + 1:06d}" and not signed_in.state.journal


def test_batch_upload_resumes_after_restart(
    tmp_path: Path, switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    """Interrupted after the first acknowledged 0320, a reloaded terminal sends
    the remaining records, then the end message."""
    _fill(signed_in, switch, 10)
    roundtrip(signed_in, switch, signed_in.settlement())
    first = signed_in.batch_upload()
    assert first is not None
    roundtrip(signed_in, switch, first)
    second = signed_in.batch_upload()
    assert second is not None
    signed_in.on_timeout()  # power lost before the answer
    path = tmp_path / "t.json"
    save_terminal(path, signed_in.config, signed_in.state)
    config, state = load_terminal(path)
    resumed = TerminalMachine(config, state)
    frame = resumed.batch_upload()
    assert frame is not None
    records = parse_upload_f48(request_of(frame).text(48))
    assert [r.amount_minor for r in records] == [108, 109]


def test_state_round_trips_through_a_0600_file(
    tmp_path: Path, switch: FakeSwitch, signed_in: TerminalMachine
) -> None:
    _fill(signed_in, switch, 2)
    signed_in.purchase(CUP_CARD, 700)
    signed_in.on_timeout()
    path = tmp_path / "terminal.json"
    save_terminal(path, signed_in.config, signed_in.state)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    config, state = load_terminal(path)
    assert config == signed_in.config
    assert state == signed_in.state
    reloaded = TerminalMachine(config, state)
    assert reloaded.reversal_due
    assert request_of(reloaded.reversal())[11] == f"{signed_in.state.last_trace:06d}"
