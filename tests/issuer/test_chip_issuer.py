"""The issuer's chip book: IMK-AC under the LMK only, ATCs kept in the db, the
``issuer-sim cards add --chip-psn`` command, and the KQ hook's decisions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from issuer_sim.chipissuer import ChipIssuer, ChipStore, open_chip_book
from issuer_sim.cli import main
from posp.iso8583 import Message
from posp.lab.inprocess_hsm import inprocess_hsm_client
from terminals.chip import DEMO_CHIP_CARDS, ChipCard, TerminalChipData, load_chip_cards

IMK_HEX = "8657AD5129F18615AE5D04C46E0D57AE"
PAN = "6225880000000000010"


def _cli(*args: str) -> None:
    main(["cards", "add", *args])


def test_cards_add_with_a_chip_psn_keeps_the_imk_ac_under_the_lmk_only(tmp_path: Path) -> None:
    db = str(tmp_path / "issuer.db")
    _cli("--db", db, "--pan", PAN, "--expiry", "3012", "--pin", "123456")
    _cli("--db", db, "--pan", PAN, "--expiry", "3012", "--pin", "123456", "--chip-psn", "01",
         "--imk-ac", IMK_HEX)  # fmt: skip
    [account] = ChipStore(db).load().values()
    assert account.pan == PAN and account.psn == "01" and account.mk_ac.startswith("U")
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert IMK_HEX not in dump.upper()


def test_cards_add_without_chip_options_makes_no_chip_card(tmp_path: Path) -> None:
    db = str(tmp_path / "issuer.db")
    _cli("--db", db, "--pan", PAN, "--expiry", "3012", "--pin", "123456")
    assert ChipStore(db).load() == {}


def test_a_bad_chip_psn_is_refused_with_exit_2(tmp_path: Path) -> None:
    db = str(tmp_path / "issuer.db")
    with pytest.raises(SystemExit) as exit_info:
        _cli("--db", db, "--pan", PAN, "--expiry", "3012", "--pin", "123456", "--chip-psn", "1")
    assert exit_info.value.code == 2


def _request(card: ChipCard, amount_minor: int = 500) -> Message:
    f55 = card.first_generate_ac(TerminalChipData(amount_minor, "261203", bytes(4)))
    return Message("0200", {2: PAN, 3: "000000", 4: f"{amount_minor:012d}", 23: "001", 55: f55})


async def test_accepted_atcs_survive_a_restart_and_a_replay_is_then_declined(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "issuer.db")
    hsm = inprocess_hsm_client()
    store, book = await open_chip_book(hsm, db, DEMO_CHIP_CARDS)
    issuer = ChipIssuer(hsm, book, store)
    card = ChipCard(next(r for r in load_chip_cards(DEMO_CHIP_CARDS) if r.pan == PAN))
    request = _request(card)
    code, tags = issuer.precheck(request, "purchase", PAN)
    assert code is None and tags is not None
    response = Message("0210", {39: "00", 38: "000001"})
    assert await issuer.complete(request, PAN, tags, response)
    assert isinstance(response.get(55), bytes)
    issuer.flush()
    store.close()
    store, book = await open_chip_book(hsm, db, DEMO_CHIP_CARDS)
    assert book[PAN].last_atc == card.atc
    assert ChipIssuer(hsm, book, store).precheck(request, "purchase", PAN)[0] == "05"
    store.close()


async def test_a_forged_arqc_becomes_05_without_f55_or_auth_code() -> None:
    hsm = inprocess_hsm_client()
    _, book = await open_chip_book(hsm, "", DEMO_CHIP_CARDS)
    issuer = ChipIssuer(hsm, book)
    card = ChipCard(next(r for r in load_chip_cards(DEMO_CHIP_CARDS) if r.pan == PAN))
    card.imk_ac = bytes(16)
    request = _request(card)
    _, tags = issuer.precheck(request, "purchase", PAN)
    assert tags is not None
    response = Message("0210", {39: "00", 38: "000001"})
    assert not await issuer.complete(request, PAN, tags, response)
    assert response.get(39) == "05" and 55 not in response and 38 not in response
