"""Terminal management end to end over real sockets (terminal-link §1 digit 6, §8
IC parameters, §10): the header asks, the simulated terminal runs the dialogue
before its next transaction, the switch records what it now holds and enforces
the caps it handed out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from posp.iso8583.tms_identity import TerminalIdentity
from posp.pipeline import management
from posp.tms.ic import Aid, Capk
from posp.tms.params import ParamValues, Scope
from posp.tms.service import TerminalManagement
from terminals.cards import TerminalCard
from terminals.outcome import Outcome
from terminals.session import TerminalSession
from terminals.txn import TxnKind
from terminals.updater import SIGNATURE_FAILURE, TerminalUpdater
from tests.e2e.conftest import Stack
from tests.tmsoperator import InProcessTmsOperator

RID, INDEX, MODULUS = "A000000333", "08", "B5" * 144


def _tms(stack: Stack) -> TerminalManagement:
    assert stack.switch is not None and stack.switch.tms is not None
    return stack.switch.tms


async def set_group_params(stack: Stack, **values: object) -> int:
    tms = _tms(stack)
    version = await tms.tms.set_param_set(Scope.GROUP, "default", ParamValues(**values))  # type: ignore[arg-type]
    tms.forget()
    return version


async def purchase(terminal: TerminalSession, card: TerminalCard, amount_minor: int) -> str | None:
    outcome = await terminal.transact(lambda m: m.purchase(card, amount_minor))
    return outcome.response_code


async def test_a_changed_parameter_set_reaches_every_terminal_and_its_cap_is_enforced(
    stack: Stack, card: TerminalCard
) -> None:
    terminals = [await stack.terminal(tid) for tid in ("10000001", "10000002")]
    for terminal in terminals:
        assert await purchase(terminal, card, 100) == "00"
        assert terminal.machine.state.tms.processing == "0"
    version = await set_group_params(
        stack,
        merchant_name="上海测试商户",
        purchase_cap_minor=5000,
        small_amount_enabled=True,
        small_amount_limit_minor=30000,
    )
    before = await stack.balance(card)
    for terminal in terminals:
        # The next answer carries digit 1; the terminal downloads before the next request.
        assert await purchase(terminal, card, 100) == "00"
        assert terminal.machine.state.tms.processing == "1"
        assert await purchase(terminal, card, 200) == "00"
        held = terminal.machine.state.tms
        assert (held.param_version, held.purchase_cap_minor) == (version, 5000)
        assert (held.merchant_name, held.no_pin_limit_minor) == ("上海测试商户", 30000)
        assert held.processing == "0"
        assert await purchase(terminal, card, 5001) == "61"
        tid = terminal.machine.config.terminal_id
        assert (await _tms(stack).view(tid, 0)).known.held_param_version == version  # type: ignore[union-attr]
    assert await stack.balance(card) == before - 2 * 300


async def test_a_refund_over_the_refund_cap_is_answered_61(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    bought = await terminal.transact(lambda m: m.purchase(card, 9000))
    assert bought.approved and bought.message is not None
    await set_group_params(stack, refund_cap_minor=1000)
    rrn, date = bought.message.text(37), bought.message.text(13)
    refund = await terminal.transact(lambda m: m.refund(card, rrn, date, 1001))
    assert refund.response_code == "61"
    assert (await terminal.transact(lambda m: m.refund(card, rrn, date, 1000))).approved


def _capk() -> Capk:
    digest = hashlib.sha1(bytes.fromhex(RID + INDEX + MODULUS + "03")).hexdigest()
    return Capk(rid=RID, index=INDEX, modulus=MODULUS, exponent="03", expiry="301231", hash=digest)


async def test_capk_and_aid_download_triggered_by_the_header_then_the_purchase_succeeds(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    tms = _tms(stack)
    await tms.ic.put_capk(_capk())
    await tms.ic.put_aid(Aid(aid="A000000333010101", floor_limit_minor=0))
    await tms.ic.put_aid(Aid(aid="A000000333010102", ec_limit_minor=100000))
    tms.forget()
    assert await purchase(terminal, card, 100) == "00"
    assert terminal.machine.state.tms.processing == "4"
    assert await purchase(terminal, card, 100) == "00"  # CAPK, then AID (digit 5), first
    held = terminal.machine.state.tms
    assert len(held.capks) == 1 and held.capks[0] == _capk().tlv().hex().upper()
    assert [bytes.fromhex(a)[3:11].hex().upper() for a in held.aids] == [
        "A000000333010101",
        "A000000333010102",
    ]
    view = await tms.view("10000001", 0)
    assert view.digit == "0" and view.known is not None
    assert (view.known.held_capk_version, view.known.held_aid_version) == (
        view.capk_version,
        view.aid_version,
    )


async def test_the_f59_identity_is_stored_from_sign_in_and_financial_requests(
    stack: Stack, card: TerminalCard
) -> None:
    terminal = await stack.terminal()
    identity = TerminalIdentity(
        device_type="04",
        hardware_serial="000002A1B2C3",
        app_version="V1.0",
        iccid="898600112233445566",
        location="+121.4737/+31.2304",
    )
    terminal.machine.state.tms.identity = identity.render()
    assert await purchase(terminal, card, 100) == "00"
    known = (await _tms(stack).view("10000001", 0)).known
    assert known is not None and known.identity == identity.render()
    assert known.app_version == "V1.0"
    terminal.machine.state.tms.identity = "A2003XYZ"  # malformed: 30, nothing stored
    assert await purchase(terminal, card, 100) == "30"
    known = (await _tms(stack).view("10000001", 0)).known
    assert known is not None and known.identity == identity.render()


async def _offered_update(
    stack: Stack, tmp_path: Path, corrupt: bool
) -> tuple[TerminalSession, TerminalUpdater, TerminalManagement, int]:
    """A rollout offers terminal 10000001 a package served by the real TMS endpoint
    (its bytes changed on the server when ``corrupt``); two purchases later the
    terminal has run its updater and reported."""
    tms = _tms(stack)
    terminal = await stack.terminal()
    operator = InProcessTmsOperator(tms, tmp_path / "tms")
    try:
        link = await operator.offer_update("10000001", corrupt=corrupt)
        terminal.software = link
        card = stack.cards[0]
        assert await purchase(terminal, card, 100) == "00"
        assert terminal.machine.state.tms.processing in ("1", "6")
        assert await purchase(terminal, card, 100) == "00"  # parameters, then the update, first
    finally:
        await operator.close()
    [rollout] = await tms.tms.rollouts()
    return terminal, link.updater, tms, rollout.id


async def test_a_software_update_offered_by_a_rollout_is_installed_and_reported(
    stack: Stack, tmp_path: Path
) -> None:
    terminal, updater, tms, rollout_id = await _offered_update(stack, tmp_path, corrupt=False)
    assert updater.software.app_version == "V2.0"  # the operator's first package
    rollout = await tms.tms.rollout(rollout_id)
    assert rollout is not None and rollout.state == "done"
    view = await tms.view("10000001", 0)
    assert view.known is not None and view.known.app_version == "V2.0"
    assert view.known.install_result == "OK" and view.digit == "0"
    identity = terminal.machine.state.tms.identity
    assert identity is not None and TerminalIdentity.parse(identity).app_version == "V2.0"
    assert view.known.app_version == "V2.0"


async def test_a_tampered_package_is_refused_and_reported_as_signature_failure(
    stack: Stack, tmp_path: Path
) -> None:
    _, updater, tms, rollout_id = await _offered_update(stack, tmp_path, corrupt=True)
    assert updater.software.app_version == "V1.0"
    assert updater.software.last_result == f"{SIGNATURE_FAILURE}:tampered"
    view = await tms.view("10000001", 0)
    assert view.known is not None and view.known.install_result == "验证签名失败:tampered"
    assert view.known.app_version == "V1.0"
    rollout = await tms.tms.rollout(rollout_id)
    assert rollout is not None and rollout.state == "halted"  # 1 of 1 failed > 5 %


async def test_an_aid_list_longer_than_one_f62_is_paged_with_status_1_then_2(
    stack: Stack, card: TerminalCard
) -> None:
    tms = _tms(stack)
    aids = [f"A0000003330101{n:02X}" for n in range(60)]  # 60 x 11 bytes of TLV > 512
    for aid in aids:
        await tms.ic.put_aid(Aid(aid=aid))
    terminal = await stack.terminal()  # its sign-in answer asks for the AIDs (digit 5)
    seen: list[Outcome] = []
    terminal.on_outcome = lambda outcome, _s: seen.append(outcome)
    assert await purchase(terminal, card, 100) == "00"
    held = terminal.machine.state.tms.aids
    assert [bytes.fromhex(a)[3:11].hex().upper() for a in held] == aids
    statuses = [
        o.message.get(62)[:1]  # type: ignore[index]
        for o in seen
        if o.kind is TxnKind.MANAGEMENT_REPORT and o.message is not None
    ]
    assert statuses == [b"1", b"2"]


async def test_a_parameter_continuation_naming_no_part_is_answered_30(stack: Stack) -> None:
    await set_group_params(stack, hotline="95516")
    terminal = await stack.terminal()
    machine = terminal.machine
    outcome = await terminal.exchange(machine.management(TxnKind.MANAGEMENT_REQUEST, "364", b"007"))
    assert outcome.response_code == "30"


async def test_a_parameter_set_in_several_parts_is_fetched_with_364_and_applied_whole(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With F62 parts cut at 60 bytes, the answer's 60.3 says 364 until the last part."""
    monkeypatch.setattr(management, "F62_MAX_BYTES", 60)
    version = await set_group_params(
        stack, hotline="95516", merchant_name="上海测试商户", purchase_cap_minor=5000,
        refund_cap_minor=4000, transfer_cap_minor=3000,
    )  # fmt: skip
    terminal = await stack.terminal()
    seen: list[Outcome] = []
    terminal.on_outcome = lambda outcome, _s: seen.append(outcome)
    assert await purchase(terminal, card, 100) == "00"
    held = terminal.machine.state.tms
    assert (held.param_version, held.refund_cap_minor, held.transfer_cap_minor) == (
        version,
        4000,
        3000,
    )
    net_codes = [
        o.message.text(60)[8:11]
        for o in seen
        if o.kind is TxnKind.MANAGEMENT_REQUEST and o.message is not None
    ]
    assert len(net_codes) > 2 and net_codes[-1] == "361"  # the end's echo
    assert set(net_codes[:-2]) == {"364"} and net_codes[-2] == "361"
