"""Terminal lifecycle in the pipeline (terminal-link.md §10-§11): dormancy and
device binding answered 58 at sign-in and on every card transaction, through
the pure rules of ``posp.risk.lifecycle``; operator actions ``reactivate`` and
``unbind``.

Invariants:
* The state lives in the store (``risk_terminals``), so every instance sees a
  freeze or a reactivation — at once at sign-in, within ``STATE_CACHE_S`` for
  transactions (a per-process cache keeps the store off the hot path); a
  change and its event are written when a check changes the state.
* A terminal first seen by these checks starts its lifecycle that day (a
  terminal registered before the wiring is not dormant at once).
* The identity compared is what the terminal presents: F59 A2/02 and A2/06
  when the terminal-identity wiring has put them in the context, else at
  sign-in the legacy F62 device serial; nothing presented is never compared.
* Reversals never pass here: a frozen terminal can still undo its money.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Final

from posp.log import get_logger
from posp.pipeline.codes import ResponseCode as RC
from posp.pipeline.context import TxnContext
from posp.risk.lifecycle import (
    DeviceIdentity,
    Event,
    TerminalRiskState,
    check_terminal,
    on_approved,
    reactivate,
    unbind,
)
from posp.store.risk_records import SqlRiskRecords

if TYPE_CHECKING:
    from posp.pipeline.risk import RiskService
from posp.txn import TxnType

_SERIAL_PADDING: Final = b" \x00"
#: How long a transaction may use a terminal's lifecycle state read earlier.
STATE_CACHE_S: Final = 5.0

_log = get_logger("posp.pipeline.lifecycle")


def presented_identity(ctx: TxnContext, *, sign_in: bool) -> DeviceIdentity:
    """What the terminal presents: its F59 A2 (TUSN, SIM ICCID), read by
    ``posp.pipeline.management.record_identity``; without one, the sign-in's F62
    device serial."""
    if ctx.device_identity is not None:
        return ctx.device_identity
    sent = ctx.message.get(62) if sign_in else None
    if isinstance(sent, bytes):
        serial = sent.strip(_SERIAL_PADDING).decode("ascii", "replace")
        if serial.isprintable():
            return DeviceIdentity(hardware_serial=serial)
    return DeviceIdentity()


async def check_lifecycle(ctx: TxnContext) -> RC | None:
    """58 for a dormant or frozen terminal; binds the device at the first sign-in."""
    service = ctx.services.risk
    if service is None:
        return None
    sign_in = ctx.route.txn_type is TxnType.SIGN_IN
    terminal_id = ctx.text(41)
    today = ctx.now.date()
    records = service.records
    state = await _state(service, terminal_id, today, fresh=sign_in)
    presented = presented_identity(ctx, sign_in=sign_in)
    elsewhere = await records.iccid_bound_elsewhere(presented.sim_iccid, terminal_id)
    verdict = check_terminal(
        state,
        presented,
        today,
        sign_in=sign_in,
        dormant_after_days=service.dormant_after_days,
        iccid_bound_elsewhere=elsewhere,
    )
    if verdict.event is not None:
        await _put_state(service, terminal_id, verdict.state)
        await records.journal_event(terminal_id, verdict.event, _detail(presented))
        _log.warning("terminal lifecycle event", lifecycle_event=verdict.event.value)
    ctx.terminal_risk = verdict.state
    if not verdict.allowed:
        return RC.NOT_PERMITTED_TERMINAL
    return None


def _detail(presented: DeviceIdentity) -> str:
    """Bounded: the serial, and the SIM's last 4 digits only."""
    parts = []
    if presented.hardware_serial:
        parts.append(f"serial={presented.hardware_serial[:32]}")
    if presented.sim_iccid:
        parts.append(f"iccid=…{presented.sim_iccid[-4:]}")
    return " ".join(parts)


async def note_approved(ctx: TxnContext) -> None:
    """An approved transaction keeps the terminal active (one write a day)."""
    service = ctx.services.risk
    state = ctx.terminal_risk
    if service is None or state is None:
        return
    active = on_approved(state, ctx.now.date())
    if active is not state:
        await _put_state(service, ctx.text(41), active)


async def _state(
    service: RiskService, terminal_id: str, today: dt.date, *, fresh: bool
) -> TerminalRiskState:
    """The terminal's state: from the store at sign-in, else cached up to
    ``STATE_CACHE_S`` (an operator's reactivate/unbind reaches every instance
    within that; its own changes are seen at once)."""
    cached = service.terminal_states.get(terminal_id)
    now_s = time.monotonic()
    if not fresh and cached is not None and now_s - cached[1] < STATE_CACHE_S:
        return cached[0]
    stored = await service.records.terminal_state(terminal_id)
    state = stored or TerminalRiskState(registered_on=today)
    service.terminal_states[terminal_id] = (state, now_s)
    return state


async def _put_state(service: RiskService, terminal_id: str, state: TerminalRiskState) -> None:
    await service.records.put_terminal_state(terminal_id, state)
    service.terminal_states[terminal_id] = (state, time.monotonic())


async def operator_action(
    records: SqlRiskRecords, terminal_id: str, action: str, today: dt.date
) -> str:
    """``posp terminal reactivate|unbind ID`` on the switch's local ``today``: the
    new state, journaled; returns the event."""
    state = await records.terminal_state(terminal_id) or TerminalRiskState(registered_on=today)
    if action == "reactivate":
        changed, event = reactivate(state, today), Event.REACTIVATED
    else:
        changed, event = unbind(state), Event.UNBOUND
    await records.put_terminal_state(terminal_id, changed)
    await records.journal_event(terminal_id, event, "operator")
    return event.value
