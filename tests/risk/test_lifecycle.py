"""Terminal lifecycle as pure functions: dormancy after dormant_after_days
idle days, device/SIM binding at first sign-in, a change freezes (58)."""

from __future__ import annotations

import datetime as dt

from posp.risk.lifecycle import (
    DeviceIdentity,
    Event,
    TerminalRiskState,
    check_terminal,
    on_approved,
    reactivate,
    unbind,
)
from posp.risk.model import RiskCode

DAY0 = dt.date(2026, 1, 1)
DEVICE = DeviceIdentity("TUSN0001", "89860000000000000001")


def _signed_in(state: TerminalRiskState, presented: DeviceIdentity = DEVICE) -> TerminalRiskState:
    verdict = check_terminal(state, presented, DAY0, sign_in=True)
    assert verdict.allowed
    return verdict.state


def test_first_sign_in_binds_serial_and_sim_and_reports_it() -> None:
    verdict = check_terminal(TerminalRiskState(DAY0), DEVICE, DAY0, sign_in=True)
    assert verdict.allowed and verdict.event is Event.BOUND
    assert (verdict.state.bound_serial, verdict.state.bound_iccid) == (
        "TUSN0001",
        "89860000000000000001",
    )
    again = check_terminal(verdict.state, DEVICE, DAY0, sign_in=True)
    assert again.allowed and not again.changed


def test_a_transaction_does_not_bind() -> None:
    verdict = check_terminal(TerminalRiskState(DAY0), DEVICE, DAY0, sign_in=False)
    assert verdict.allowed and verdict.state.bound_serial == ""


def test_sim_moved_into_another_terminal_freezes_it_with_58_until_unbound() -> None:
    bound = _signed_in(TerminalRiskState(DAY0))
    moved = DeviceIdentity("TUSN0001", "89860000000000000999")
    verdict = check_terminal(bound, moved, DAY0, sign_in=False)
    assert not verdict.allowed and verdict.code is RiskCode.TERMINAL_NOT_PERMITTED
    assert verdict.event is Event.SIM_CHANGED and verdict.state.frozen
    still = check_terminal(verdict.state, DEVICE, DAY0, sign_in=True)  # even the old SIM back
    assert not still.allowed and still.code is RiskCode.TERMINAL_NOT_PERMITTED
    rebound = check_terminal(unbind(verdict.state), moved, DAY0, sign_in=True)
    assert rebound.allowed and rebound.state.bound_iccid == moved.sim_iccid


def test_a_changed_hardware_serial_freezes() -> None:
    verdict = check_terminal(
        _signed_in(TerminalRiskState(DAY0)), DeviceIdentity("TUSN0002"), DAY0, sign_in=True
    )
    assert not verdict.allowed and verdict.event is Event.SERIAL_CHANGED


def test_a_sim_bound_to_another_terminal_freezes_an_unbound_one() -> None:
    verdict = check_terminal(
        TerminalRiskState(DAY0), DEVICE, DAY0, sign_in=True, iccid_bound_elsewhere=True
    )
    assert not verdict.allowed and verdict.event is Event.SIM_ELSEWHERE


def test_values_the_terminal_does_not_send_are_not_compared() -> None:
    verdict = check_terminal(
        _signed_in(TerminalRiskState(DAY0)), DeviceIdentity(), DAY0, sign_in=False
    )
    assert verdict.allowed


def test_dormant_after_more_than_dormant_after_days_idle_and_reactivation_restores() -> None:
    active = on_approved(_signed_in(TerminalRiskState(DAY0)), DAY0)
    at_limit = DAY0 + dt.timedelta(days=180)
    assert check_terminal(active, DEVICE, at_limit, sign_in=True).allowed
    verdict = check_terminal(active, DEVICE, at_limit + dt.timedelta(days=1), sign_in=True)
    assert not verdict.allowed and verdict.event is Event.DORMANT
    assert verdict.code is RiskCode.TERMINAL_NOT_PERMITTED
    later = at_limit + dt.timedelta(days=2)
    assert not check_terminal(verdict.state, DEVICE, later, sign_in=False).allowed
    assert check_terminal(reactivate(verdict.state, later), DEVICE, later, sign_in=True).allowed


def test_dormancy_counts_from_registration_and_honours_the_setting() -> None:
    new = TerminalRiskState(DAY0)
    assert check_terminal(
        new, DEVICE, DAY0 + dt.timedelta(days=30), sign_in=True, dormant_after_days=30
    ).allowed
    assert not check_terminal(
        new, DEVICE, DAY0 + dt.timedelta(days=31), sign_in=True, dormant_after_days=30
    ).allowed


def test_approvals_keep_a_terminal_active() -> None:
    state = TerminalRiskState(DAY0)
    day = DAY0
    for _ in range(5):
        day += dt.timedelta(days=150)
        assert check_terminal(state, DEVICE, day, sign_in=False).allowed
        state = on_approved(state, day)
    assert on_approved(state, day) is state  # a second approval the same day changes nothing
