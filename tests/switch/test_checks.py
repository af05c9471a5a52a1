"""Every response code the checks produce, provoked over a real socket."""

from __future__ import annotations

import datetime as dt

from posp.iso8583 import Message
from posp.store import Store
from posp.switch import Switch
from tests.switch.conftest import MERCHANT_ID, TERMINAL_ID, provision
from tests.switch.termclient import TEST_PAN, SimTerminal


async def signed_in(terminal: SimTerminal, net_code: str = "001") -> SimTerminal:
    frame = await terminal.sign_in(net_code)
    assert frame.message[39] == "00"
    return terminal


async def test_purchase_passing_every_check_answers_91_with_a_valid_mac(
    terminal: SimTerminal, store: Store
) -> None:
    await signed_in(terminal)
    body, frame = await terminal.exchange(terminal.encode(terminal.purchase(), mac=True))
    answer = frame.message
    assert answer.mti == "0210" and answer[39] == "91"
    assert terminal.verify_answer_mac(body)
    assert answer[2] == TEST_PAN and answer[4] == "000000001000"
    for n in (11, 12, 13, 15, 32, 37, 41, 42, 49, 60):
        assert n in answer, n
    entry = await store.find_by_trace(TERMINAL_ID, "000001", answer.text(11))
    assert entry is not None and entry.state == "declined" and entry.response_code == "91"
    assert entry.pan_masked == "622588******0001" and entry.pan_hash
    assert entry.rrn == answer[37]


async def test_unknown_terminal_answers_97(switch: Switch) -> None:
    stranger = SimTerminal("99999999", MERCHANT_ID)
    await stranger.connect(switch.port)
    _body, frame = await stranger.exchange(stranger.encode(stranger.purchase()))
    assert frame.message[39] == "97"
    await stranger.close()


async def test_merchant_not_the_terminals_answers_03(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    terminal.merchant_id = "898100000000999"
    _body, frame = await terminal.exchange(terminal.encode(terminal.purchase(), mac=True))
    assert frame.message[39] == "03"


async def test_disabled_terminal_answers_58(terminal: SimTerminal, store: Store) -> None:
    await signed_in(terminal)
    await store.set_terminal_status(TERMINAL_ID, "disabled")
    _body, frame = await terminal.exchange(terminal.encode(terminal.purchase(), mac=True))
    assert frame.message[39] == "58"


async def test_disabled_merchant_answers_58_even_to_sign_in(
    terminal: SimTerminal, store: Store
) -> None:
    await store.set_merchant_status(MERCHANT_ID, "disabled")
    frame = await terminal.sign_in()
    assert frame.message[39] == "58"


async def test_sign_in_from_another_device_than_the_bound_one_answers_58(
    switch: Switch, store: Store
) -> None:
    assert switch.hsm is not None
    await provision(store, switch.hsm, "10000002", device_serial="SN-0001")
    bound = SimTerminal("10000002", MERCHANT_ID)
    await bound.connect(switch.port)
    message = bound.sign_in_message()
    message[62] = b"SN-9999"
    _body, frame = await bound.exchange(bound.encode(message))
    assert frame.message[39] == "58" and 62 not in frame.message
    message = bound.sign_in_message()
    message[62] = b"SN-0001"
    _body, frame = await bound.exchange(bound.encode(message))
    assert frame.message[39] == "00" and 62 in frame.message
    await bound.close()


async def test_not_signed_in_answers_77_and_asks_for_sign_in(terminal: SimTerminal) -> None:
    _body, frame = await terminal.exchange(terminal.encode(terminal.purchase()))
    assert frame.message[39] == "77"
    assert frame.header[5] == "3"
    assert 64 not in frame.message


async def test_expired_keys_answer_77_with_header_digit_3(
    terminal: SimTerminal, store: Store
) -> None:
    await signed_in(terminal)
    record = await store.get_terminal(TERMINAL_ID)
    assert record is not None and record.tpk_lmk and record.tak_lmk
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    await store.set_working_keys(TERMINAL_ID, record.tpk_lmk, record.tak_lmk, None, old)
    _body, frame = await terminal.exchange(terminal.encode(terminal.purchase(), mac=True))
    assert frame.message[39] == "77" and frame.header[5] == "3"


async def test_wrong_batch_answers_77(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    terminal.batch = "000002"
    _body, frame = await terminal.exchange(terminal.encode(terminal.purchase(), mac=True))
    assert frame.message[39] == "77" and frame.header[5] == "3"


async def test_bad_mac_answers_a0_without_f64(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    body = bytearray(terminal.encode(terminal.purchase(), mac=True))
    body[-1] = ord("0") if body[-1] != ord("0") else ord("1")
    _body, frame = await terminal.exchange(bytes(body))
    assert frame.message[39] == "A0"
    assert 64 not in frame.message
    assert frame.header[5] == "3"


async def test_missing_mac_answers_a0_without_f64(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    _body, frame = await terminal.exchange(terminal.encode(terminal.purchase()))
    assert frame.message[39] == "A0" and 64 not in frame.message


async def test_missing_required_field_answers_30_with_mac(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    message = terminal.purchase()
    del message[49]
    body, frame = await terminal.exchange(terminal.encode(message, mac=True))
    assert frame.message[39] == "30"
    assert terminal.verify_answer_mac(body)


async def test_purchase_without_card_data_answers_30(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    message = terminal.purchase()
    del message[2]
    _body, frame = await terminal.exchange(terminal.encode(message, mac=True))
    assert frame.message[39] == "30"


async def test_undecodable_field_answers_30_and_keeps_the_connection(
    terminal: SimTerminal,
) -> None:
    await signed_in(terminal)
    body = bytearray(terminal.encode(terminal.purchase(), mac=True))
    # TPDU 5 + header 6 + MTI 2 + bitmap 8 + F2 (LL + 8) = 30: F3 starts here.
    body[30] = 0xAB
    _body, frame = await terminal.exchange(bytes(body))
    assert frame.message.mti == "0210" and frame.message[39] == "30"
    _body, frame = await terminal.exchange(terminal.encode(terminal.purchase(), mac=True))
    assert frame.message[39] == "91"


async def test_malformed_field_60_answers_30(terminal: SimTerminal) -> None:
    message = terminal.purchase()
    message[60] = "2200"
    _body, frame = await terminal.exchange(terminal.encode(message))
    assert frame.message[39] == "30"


async def test_unsupported_transaction_type_answers_12(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    message = terminal.purchase()
    message[3] = "990000"
    message[60] = "99" + terminal.batch + "000"
    _body, frame = await terminal.exchange(terminal.encode(message, mac=True))
    assert frame.message[39] == "12"


async def test_reversal_of_a_never_reversed_type_answers_12(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    message = terminal.purchase()
    message.mti = "0400"
    message[60] = "25" + terminal.batch + "000"  # a refund is never reversed
    _body, frame = await terminal.exchange(terminal.encode(message, mac=True))
    assert frame.message.mti == "0410" and frame.message[39] == "12"


async def test_duplicate_terminal_batch_trace_answers_94(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    body = terminal.encode(terminal.purchase(), mac=True)
    _first_body, first = await terminal.exchange(body)
    assert first.message[39] == "91"
    _second_body, second = await terminal.exchange(body)
    assert second.message[39] == "94"


async def test_reversal_reuses_the_trace_without_94(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    original = terminal.purchase()
    await terminal.exchange(terminal.encode(original.copy(), mac=True))
    reversal = original.copy()
    reversal.mti = "0400"
    reversal[39] = "98"
    _body, frame = await terminal.exchange(terminal.encode(reversal, mac=True))
    # The original was declined (no network): nothing to undo, the 0400 is answered 00.
    assert frame.message.mti == "0410" and frame.message[39] == "00"


async def test_management_message_without_terminal_id_answers_30(terminal: SimTerminal) -> None:
    message = Message("0820", {11: "000001", 60: "00000001301"})
    _body, frame = await terminal.exchange(terminal.encode(message))
    assert frame.message[39] == "30"


async def test_settlement_of_an_empty_batch_answers_00_balanced(terminal: SimTerminal) -> None:
    await signed_in(terminal)
    zeros = "0" * 30 + "0"
    message = Message(
        "0500",
        {
            11: terminal.next_trace(),
            41: TERMINAL_ID,
            42: MERCHANT_ID,
            48: zeros + zeros,
            49: "156",
            60: "00" + terminal.batch + "201",
            63: "001",
        },
    )
    _body, frame = await terminal.exchange(terminal.encode(message))
    answer = frame.message
    assert answer.mti == "0510" and answer[39] == "00"
    f48 = answer.text(48)
    assert f48[30] == "1" and f48[61] == "1"
    assert 64 not in answer  # settlement MAC is off by default
