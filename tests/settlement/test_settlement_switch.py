"""Settlement and batch upload end to end: a simulated terminal (terminals.machine)
talks to a running Switch over a socket; the journal is seeded through the store on
the switch's side and in the terminal's own journal, as if the sales had happened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from posp.admin import Admin
from posp.lab.inprocess_hsm import inprocess_hsm_client
from posp.settings import Settings, load_settings
from posp.store.api import APPROVED, VOIDED, JournalEntry, Store
from posp.switch import Switch
from terminals.config import TerminalConfig
from terminals.journal import JournalEntry as TerminalEntry
from terminals.machine import TerminalMachine
from terminals.session import SessionOptions, TerminalSession

from .conftest import BATCH, DOMESTIC_PAN, FOREIGN_PAN, MERCHANT, TERMINAL

TMK = "0123456789ABCDEFFEDCBA9876543210"


@pytest.fixture(params=[False, True], ids=["no-mac", "mac-on-settlement"])
def mac_on_settlement(request: pytest.FixtureRequest) -> bool:
    """Every end-to-end test runs with and without MACs on settlement and upload."""
    return bool(request.param)


def switch_settings(tmp_path: Path, *, mac_on_settlement: bool) -> Settings:
    return load_settings(
        terminal_port=0,
        metrics_enabled=False,
        network_enabled=False,
        data_dir=tmp_path,
        store_url=f"sqlite:///{tmp_path / 'posp.db'}",
        settlement={"mac_on_settlement": mac_on_settlement},
    )


@pytest.fixture
async def switch(tmp_path: Path, store: Store, mac_on_settlement: bool) -> AsyncIterator[Switch]:
    hsm = inprocess_hsm_client()
    await Admin(store, hsm).rotate_tmk(TERMINAL, TMK)
    settings = switch_settings(tmp_path, mac_on_settlement=mac_on_settlement)
    running = Switch(settings, store=store, hsm=hsm)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def session(switch: Switch, mac_on_settlement: bool) -> TerminalSession:
    config = TerminalConfig(
        TERMINAL, MERCHANT, bytes.fromhex(TMK), mac_settlement=mac_on_settlement
    )
    return TerminalSession(TerminalMachine(config), SessionOptions(port=switch.port))


async def test_settlement_without_mac_refused_when_mac_on_settlement(
    tmp_path: Path, store: Store
) -> None:
    """With mac_on_settlement a 0500 lacking F64 is not accepted."""
    hsm = inprocess_hsm_client()
    await Admin(store, hsm).rotate_tmk(TERMINAL, TMK)
    settings = load_settings(
        terminal_port=0,
        metrics_enabled=False,
        network_enabled=False,
        data_dir=tmp_path,
        settlement={"mac_on_settlement": True},
    )
    async with Switch(settings, store=store, hsm=hsm) as running:
        machine = TerminalMachine(TerminalConfig(TERMINAL, MERCHANT, bytes.fromhex(TMK)))
        session = TerminalSession(machine, SessionOptions(port=running.port))
        outcome = await session.settle()
        assert not outcome.approved and outcome.response_code in ("30", "A0")


class Sales:
    """Records the same sale in the switch's journal and in the terminal's."""

    def __init__(self, switch: Switch, session: TerminalSession) -> None:
        assert switch.store is not None and switch.pipeline is not None
        self.store: Store = switch.store
        self.services = switch.pipeline.services
        self.machine = session.machine
        self.trace = 100

    async def add(
        self,
        kind: str,
        amount_minor: int,
        pan: str = DOMESTIC_PAN,
        *,
        voided: bool = False,
        in_terminal: bool = True,
    ) -> str:
        self.trace += 1
        trace = f"{self.trace:06d}"
        klass = self.services.card_class(pan, None)
        await self.store.insert_entry(
            JournalEntry(
                terminal_id=TERMINAL,
                merchant_id=MERCHANT,
                batch=BATCH,
                trace=trace,
                txn_type=kind,
                mti="0220" if kind == "refund" else "0200",
                amount_minor=amount_minor,
                pan_hash=self.services.pan_hash(pan),
                card_class=klass,
                state=VOIDED if voided else APPROVED,
                rrn=f"{self.trace:012d}",
                auth_code="000001",
            )
        )
        if in_terminal:
            self.machine.state.journal[trace] = TerminalEntry(
                kind=kind,
                trace=trace,
                batch=BATCH,
                pan=pan,
                expiry="3012",
                track2=pan + "=30121010000000000",
                entry_mode="magstripe",
                amount_minor=amount_minor,
                rrn=f"{self.trace:012d}",
                auth_code="000001",
                date="0101",
                card_class=klass,
                voided=voided,
            )
        return trace


@pytest.fixture
def sales(switch: Switch, session: TerminalSession) -> Sales:
    return Sales(switch, session)


async def test_balanced_batch_settles_uploads_and_moves_to_next_batch(
    store: Store, session: TerminalSession, sales: Sales
) -> None:
    for amount in (1000, 2000, 3000):
        await sales.add("purchase", amount)
    await sales.add("purchase", 500, voided=True)
    await sales.add("purchase", 700, FOREIGN_PAN)
    await sales.add("refund", 300)
    outcome = await session.settle()
    assert outcome.approved and outcome.balanced
    assert session.machine.state.batch == "000002"
    terminal = await store.get_terminal(TERMINAL)
    assert terminal is not None and terminal.batch == "000002"
    settlement = await store.get_settlement(TERMINAL, BATCH)
    assert settlement is not None and settlement.upload_complete
    assert settlement.domestic_balanced and settlement.foreign_balanced
    assert (settlement.upload_records, settlement.upload_mismatches) == (5, 0)


async def test_unbalanced_domestic_is_reported_and_upload_mismatch_recorded(
    store: Store, session: TerminalSession, sales: Sales
) -> None:
    await sales.add("purchase", 1000)
    await sales.add("purchase", 2000, in_terminal=False)  # the terminal lost this one
    await sales.add("purchase", 800, FOREIGN_PAN)
    outcome = await session.settle()
    assert outcome.approved and outcome.balanced is False
    settlement = await store.get_settlement(TERMINAL, BATCH)
    assert settlement is not None
    assert not settlement.domestic_balanced and settlement.foreign_balanced
    assert settlement.upload_complete and settlement.upload_records == 2


async def test_stale_batch_refused_with_77_and_next_batch_accepted(
    session: TerminalSession, sales: Sales
) -> None:
    await sales.add("purchase", 1000)
    assert (await session.settle()).approved
    machine = session.machine
    machine.state.batch = BATCH  # a terminal that missed the increment
    stale = await session.exchange(machine.settlement())
    assert stale.response_code == "77"
    machine.state.batch = "000002"
    machine.state.journal.clear()
    assert (await session.settle()).approved


async def test_interrupted_upload_resumes_and_resent_records_are_accepted(
    store: Store, session: TerminalSession, sales: Sales
) -> None:
    for i in range(12):
        await sales.add("purchase", 100 + i)
    machine = session.machine
    assert await session.prepare() is None  # signed in
    assert (await session.exchange(machine.settlement())).approved
    first = machine.batch_upload()
    assert first is not None and (await session.exchange(first)).approved
    # power lost before the acknowledgement was saved: the terminal sends it again
    assert machine.state.upload is not None
    machine.state.upload.acked = 0
    outcome = await session.settle()  # resumes the upload under way
    assert outcome.approved and machine.state.batch == "000002"
    settlement = await store.get_settlement(TERMINAL, BATCH)
    assert settlement is not None and settlement.upload_records == 12
    assert settlement.upload_mismatches == 0


class SilentLink:
    """A signed-on network link that must never carry traffic: a void of a closed
    batch has to be refused before anything is forwarded."""

    signed_on = True
    metrics = SimpleNamespace(saf_depth=SimpleNamespace(set=lambda _value: None))

    async def send(self, *_args: object, **_kwargs: object) -> None:
        raise AssertionError("the void reached the card network")

    def when_up(self, callback: object) -> None:
        """Always up: nothing to tell the SAF forwarder later."""

    async def close(self) -> None:
        return None


async def test_void_of_a_transaction_in_a_closed_batch_is_refused_with_25(
    tmp_path: Path, store: Store
) -> None:
    hsm = inprocess_hsm_client()
    await Admin(store, hsm).rotate_tmk(TERMINAL, TMK)
    settings = switch_settings(tmp_path, mac_on_settlement=False)
    async with Switch(settings, store=store, hsm=hsm, link=SilentLink()) as running:
        machine = TerminalMachine(TerminalConfig(TERMINAL, MERCHANT, bytes.fromhex(TMK)))
        session = TerminalSession(machine, SessionOptions(port=running.port))
        sales = Sales(running, session)
        trace = await sales.add("purchase", 1000)
        remembered = machine.state.journal[trace]
        assert (await session.settle()).approved  # closes batch 000001
        # a terminal that kept the sale in its journal after settling tries to void it
        machine.state.journal[trace] = remembered
        outcome = await session.transact(lambda m: m.purchase_void(trace))
        assert outcome.response_code == "25"
