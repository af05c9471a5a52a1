"""Terminal lifecycle rules as pure functions (terminal-link.md §10-§11): a
terminal unused for ``dormant_after_days`` goes dormant; the hardware serial
(F59 A2/02, TUSN) and SIM ICCID (F59 A2/06) are bound at the first sign-in and
a change freezes the terminal.  Both answer 58 at sign-in and on every
transaction until an operator acts (``reactivate`` / ``unbind``).

The caller keeps a :class:`TerminalRiskState` per terminal, asks
:func:`check_terminal` before sign-in and transactions, persists the state it
returns when ``changed`` and journals its ``event``.

Invariants:
* Functions are pure: same state, identity and day -> same verdict; no clock.
* A terminal is dormant when strictly more than ``dormant_after_days`` whole
  days passed since its last activity (last approval, reactivation or
  registration): exactly ``dormant_after_days`` idle days still transacts.
* An identity value the terminal does not send is not compared (a device
  without F59 support keeps working); one it sends that differs from the bound
  value freezes the terminal; so does a SIM already bound to another terminal.
* Frozen wins over dormant: unbinding is needed before reactivating helps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum

from posp.risk.model import RiskCode

DEFAULT_DORMANT_AFTER_DAYS = 180


class Event(StrEnum):
    """What the caller journals when a check changes a terminal's state."""

    BOUND = "device_bound"
    SERIAL_CHANGED = "frozen_serial_changed"
    SIM_CHANGED = "frozen_sim_changed"
    SIM_ELSEWHERE = "frozen_sim_bound_elsewhere"
    DORMANT = "dormant"
    REACTIVATED = "reactivated"
    UNBOUND = "unbound"


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What the terminal presented in F59 A2 ("" = not sent)."""

    hardware_serial: str = ""
    sim_iccid: str = ""


@dataclass(frozen=True, slots=True)
class TerminalRiskState:
    registered_on: dt.date
    bound_serial: str = ""
    bound_iccid: str = ""
    last_active_on: dt.date | None = None  # last approval or reactivation
    dormant: bool = False
    frozen_reason: str = ""  # an Event value while frozen, "" otherwise

    @property
    def frozen(self) -> bool:
        return bool(self.frozen_reason)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    state: TerminalRiskState
    code: RiskCode | None = None  # 58 when refused
    event: Event | None = None  # set when this check changed the state

    @property
    def changed(self) -> bool:
        return self.event is not None


def check_terminal(
    state: TerminalRiskState,
    presented: DeviceIdentity,
    today: dt.date,
    *,
    sign_in: bool,
    dormant_after_days: int = DEFAULT_DORMANT_AFTER_DAYS,
    iccid_bound_elsewhere: bool = False,
) -> Verdict:
    """May this terminal sign in (``sign_in``) or transact today?  Binds the
    presented identity at the first sign-in."""
    refused = RiskCode.TERMINAL_NOT_PERMITTED
    if state.frozen:
        return Verdict(False, state, refused)
    reason = _identity_change(state, presented, iccid_bound_elsewhere)
    if reason is not None:
        return Verdict(False, replace(state, frozen_reason=reason.value), refused, reason)
    if state.dormant:
        return Verdict(False, state, refused)
    last = state.last_active_on or state.registered_on
    if (today - last).days > dormant_after_days:
        return Verdict(False, replace(state, dormant=True), refused, Event.DORMANT)
    if sign_in and _binds(state, presented):
        bound = replace(
            state,
            bound_serial=state.bound_serial or presented.hardware_serial,
            bound_iccid=state.bound_iccid or presented.sim_iccid,
        )
        return Verdict(True, bound, None, Event.BOUND)
    return Verdict(True, state)


def _identity_change(
    state: TerminalRiskState, presented: DeviceIdentity, iccid_elsewhere: bool
) -> Event | None:
    serial, iccid = presented.hardware_serial, presented.sim_iccid
    if serial and state.bound_serial and serial != state.bound_serial:
        return Event.SERIAL_CHANGED
    if iccid and state.bound_iccid and iccid != state.bound_iccid:
        return Event.SIM_CHANGED
    if iccid and iccid != state.bound_iccid and iccid_elsewhere:
        return Event.SIM_ELSEWHERE
    return None


def _binds(state: TerminalRiskState, presented: DeviceIdentity) -> bool:
    """Whether a sign-in adds a value not bound yet (first sign-in, or a SIM
    fitted later into a terminal bound without one)."""
    return bool(
        (presented.hardware_serial and not state.bound_serial)
        or (presented.sim_iccid and not state.bound_iccid)
    )


def on_approved(state: TerminalRiskState, today: dt.date) -> TerminalRiskState:
    """An approved transaction keeps the terminal active."""
    if state.last_active_on is not None and state.last_active_on >= today:
        return state
    return replace(state, last_active_on=today)


def reactivate(state: TerminalRiskState, today: dt.date) -> TerminalRiskState:
    """``posp terminal reactivate ID``: dormant -> active from today."""
    return replace(state, dormant=False, last_active_on=today)


def unbind(state: TerminalRiskState) -> TerminalRiskState:
    """``posp terminal unbind ID``: forget the binding and the freeze; the next
    sign-in binds what the terminal presents then."""
    return replace(state, bound_serial="", bound_iccid="", frozen_reason="")
