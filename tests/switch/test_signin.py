"""Sign-in, sign-off and echo over a real socket."""

from __future__ import annotations

from typing import Any

import pytest

from posp.crypto.des import check_value
from posp.crypto.keyblock import parse_f62
from posp.iso8583 import Message
from posp.store import Store
from posp.switch import Switch
from tests.switch.conftest import MERCHANT_ID, TERMINAL_ID
from tests.switch.termclient import SimTerminal


@pytest.mark.parametrize(
    ("net_code", "pik_len", "has_tdk"), [("001", 8, False), ("003", 16, False), ("004", 16, True)]
)
async def test_sign_in_keys_decrypt_under_tmk_to_keys_matching_f62_check_values(
    terminal: SimTerminal, store: Store, net_code: str, pik_len: int, has_tdk: bool
) -> None:
    frame = await terminal.sign_in(net_code)
    answer = frame.message
    assert answer.mti == "0810"
    assert answer[39] == "00"
    assert terminal.keys is not None  # unwrap_f62 checked every CV
    block = parse_f62(net_code, answer[62])  # type: ignore[arg-type]
    assert len(terminal.keys.pik) == pik_len
    assert len(terminal.keys.mak) == 8
    assert check_value(terminal.keys.mak, 4) == block.mak_cv
    assert check_value(terminal.keys.pik, 4) == block.pik_cv
    assert (terminal.keys.tdk is not None) == has_tdk
    for n in (11, 12, 13, 32, 37, 41, 42):
        assert n in answer, n
    assert answer[60] == "00000001" + net_code
    assert 64 not in answer
    stored = await store.get_terminal(TERMINAL_ID)
    assert stored is not None and stored.tak_lmk is not None and stored.tpk_lmk is not None
    assert (stored.tdk_lmk is not None) == has_tdk


async def test_every_sign_in_issues_new_keys(terminal: SimTerminal) -> None:
    await terminal.sign_in("003")
    first = terminal.keys
    await terminal.sign_in("003")
    assert terminal.keys is not None and first is not None
    assert terminal.keys.mak != first.mak and terminal.keys.pik != first.pik


async def test_sign_in_answers_the_terminals_open_batch(
    switch: Switch, store: Store, terminal: SimTerminal
) -> None:
    await store.close_batch(TERMINAL_ID, "000001", "000005")
    terminal.batch = "000001"
    frame = await terminal.sign_in()
    assert frame.message.text(60)[2:8] == "000005"
    assert terminal.batch == "000005"


async def test_sign_in_of_unknown_terminal_answers_97(switch: Switch) -> None:
    stranger = SimTerminal("99999999", MERCHANT_ID)
    await stranger.connect(switch.port)
    frame = await stranger.sign_in()
    assert frame.message[39] == "97"
    await stranger.close()


async def test_sign_off_clears_keys_and_financial_then_answers_77(
    terminal: SimTerminal, store: Store
) -> None:
    await terminal.sign_in()
    message = Message(
        "0820", {11: terminal.next_trace(), 41: TERMINAL_ID, 42: MERCHANT_ID, 60: "00000001002"}
    )
    _body, frame = await terminal.exchange(terminal.encode(message))
    assert frame.message.mti == "0830" and frame.message[39] == "00"
    stored = await store.get_terminal(TERMINAL_ID)
    assert stored is not None and stored.tak_lmk is None
    _body, frame = await terminal.exchange(terminal.encode(terminal.purchase(), mac=True))
    assert frame.message[39] == "77"
    assert frame.header[5] == "3"


async def test_echo_answers_00(terminal: SimTerminal) -> None:
    message = Message("0820", {11: terminal.next_trace(), 41: TERMINAL_ID, 60: "00000001301"})
    _body, frame = await terminal.exchange(terminal.encode(message))
    assert frame.message.mti == "0830" and frame.message[39] == "00"


async def test_sign_in_is_journaled_without_dedupe(terminal: SimTerminal, store: Store) -> None:
    await terminal.sign_in()
    entry = await store.find_by_trace(TERMINAL_ID, "000001", "000001")
    assert entry is not None and entry.txn_type == "sign_in" and entry.response_code == "00"


async def test_a_sign_in_reads_without_a_reader_thread(terminal: SimTerminal, store: Store) -> None:
    """Its terminal, merchant, TMS view, IC versions and lifecycle state are read
    fresh by key on the event loop's own SQLite connection (``_key_rows``), not
    handed to a reader thread, whose hand-offs cost more than the reads."""
    from posp.store.sqlite import SqliteStore

    assert isinstance(store, SqliteStore)
    inline: list[str] = []
    handed_off: list[str] = []
    point_read, read = store._point_read, store._read

    async def counted_inline(op: str, *args: Any) -> Any:
        inline.append(op)
        return await point_read(op, *args)

    async def counted_read(op: str, *args: Any) -> Any:
        handed_off.append(op)  # the background sweepers' reads land here too
        return await read(op, *args)

    store._point_read = counted_inline  # type: ignore[method-assign,assignment]
    store._read = counted_read  # type: ignore[method-assign,assignment]
    for net_code in ("001", "004"):
        frame = await terminal.sign_in(net_code)
        assert frame.message[39] == "00"
    fresh = {"get_terminal", "get_merchant", "tms_view", "ic_versions", "risk_terminal_state"}
    assert fresh <= set(inline)
    assert not fresh & set(handed_off)
