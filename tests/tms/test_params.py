"""Parameter decisions: header digit 6 (§10), caps, F62 rendering of a set."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posp.iso8583.tms_params import SmallAmount, TerminalParameters
from posp.tms.params import (
    CapKind,
    EffectiveParams,
    ParamSet,
    ParamValues,
    Scope,
    effective,
    over_cap,
    processing_digit,
    to_f62,
)


def test_digit_is_1_when_parameters_are_older_before_6_for_waiting_software() -> None:
    assert processing_digit(None, 5, False) == "1"
    assert processing_digit(4, 5, True) == "1"
    assert processing_digit(5, 5, True) == "6"
    assert processing_digit(5, 5, False) == "0"
    assert processing_digit(None, 0, False) == "0"  # nothing configured: nothing to fetch


@given(st.integers(0, 100), st.integers(0, 100), st.booleans())
def test_digit_asks_for_parameters_exactly_when_the_held_version_is_behind(
    held: int, current: int, waiting: bool
) -> None:
    digit = processing_digit(held, current, waiting)
    assert (digit == "1") == (held < current)


_HELD = st.none() | st.integers(0, 50)


@given(
    _HELD, st.integers(0, 50), _HELD, st.integers(0, 50), _HELD, st.integers(0, 50), st.booleans()
)
def test_digit_precedence_is_parameters_then_capk_then_aid_then_software(
    held: int | None,
    current: int,
    held_capk: int | None,
    capk: int,
    held_aid: int | None,
    aid: int,
    waiting: bool,
) -> None:
    """§1/§8/§10: 1 before 4 before 5 before 6; a set the switch never had asks nothing."""

    def behind(h: int | None, c: int) -> bool:
        return c > 0 and (h is None or h < c)

    digit = processing_digit(
        held, current, waiting, held_capk=held_capk, current_capk=capk,
        held_aid=held_aid, current_aid=aid,
    )  # fmt: skip
    expected = next(
        (d for d, due in (("1", behind(held, current)), ("4", behind(held_capk, capk)),
                          ("5", behind(held_aid, aid)), ("6", waiting)) if due),
        "0",
    )  # fmt: skip
    assert digit == expected


def test_caps_decline_only_amounts_above_them() -> None:
    values = ParamValues(purchase_cap_minor=1000)
    assert over_cap(CapKind.PURCHASE, 1001, values)
    assert not over_cap(CapKind.PURCHASE, 1000, values)
    assert not over_cap(CapKind.REFUND, 10**9, values)  # no cap set


def test_effective_set_renders_into_f62_with_registry_fields_and_version() -> None:
    group = ParamSet(
        Scope.GROUP, "default", 3, ParamValues(hotline="95516", small_amount_limit_minor=30000)
    )
    own = ParamSet(Scope.TERMINAL, "T0000001", 9, ParamValues(small_amount_enabled=True))
    params = effective(group, own)
    assert params == EffectiveParams(
        9, ParamValues(hotline="95516", small_amount_enabled=True, small_amount_limit_minor=30000)
    )
    f62 = to_f62(params, terminal_id="T0000001", merchant_id="123456789012345", batch="000001")
    assert f62.small_amount == SmallAmount(True, 30000) and f62.version == 9
    assert TerminalParameters.parse(f62.render()) == f62
