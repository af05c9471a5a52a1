"""The terminal's terminal-management state survives a save and load (state file)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from terminals.state import TerminalState, TmsHeld

_AMOUNT = st.none() | st.integers(0, 10**12 - 1)


@given(
    st.builds(
        TmsHeld,
        processing=st.sampled_from("0123456"),
        param_version=st.none() | st.integers(0, 10**8),
        merchant_name=st.none() | st.text(max_size=20),
        purchase_cap_minor=_AMOUNT,
        refund_cap_minor=_AMOUNT,
        transfer_cap_minor=_AMOUNT,
        no_pin_limit_minor=_AMOUNT,
        capks=st.lists(st.text("0123456789ABCDEF", max_size=40), max_size=3),
        aids=st.lists(st.text("0123456789ABCDEF", max_size=40), max_size=3),
        identity=st.none() | st.text(max_size=30),
    )
)
def test_tms_state_round_trips_through_the_state_json(held: TmsHeld) -> None:
    state = TerminalState(tms=held)
    assert TerminalState.from_json(state.to_json()).tms == held


def test_a_state_file_from_before_terminal_management_loads_with_nothing_held() -> None:
    raw = TerminalState().to_json()
    del raw["tms"]
    assert TerminalState.from_json(raw).tms == TmsHeld()
