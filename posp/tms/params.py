"""Terminal parameter sets (terminal-link.md §10): group defaults, terminal
overrides, their versions, and the decisions the switch takes from them.

Invariants:
* A set's values are validated by pydantic once, when written; what is stored
  always renders into F62 (text fits its GBK width, amounts fit n12).
* Every write of a set takes a fresh version from one store-wide counter, so
  a terminal's effective version (the highest of its group's set, its own set
  and its group membership) grows whenever anything it receives changes.
* ``processing_digit`` is pure: ``1`` (download parameters) before ``4`` /
  ``5`` (CAPK / AID) before ``6`` (software waiting) before ``0``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from posp.iso8583.tms_params import SmallAmount, TerminalParameters
from posp.txn import CapKind

__all__ = ["CapKind"]  # re-exported: the cap kinds are the rows' (posp.txn)

DEFAULT_GROUP: Final = "default"
MAX_AMOUNT_MINOR: Final = 10**12 - 1


def _gbk_width(size_bytes: int) -> AfterValidator:
    def check(value: str) -> str:
        try:
            raw = value.encode("gbk")
        except UnicodeEncodeError:
            raise ValueError("must be representable in GBK") from None
        if len(raw) > size_bytes or not value.isprintable() or value != value.rstrip(" "):
            raise ValueError(
                f"must be printable, at most {size_bytes} GBK bytes, no trailing space"
            )
        return value

    return AfterValidator(check)


Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT_MINOR)]


class ParamValues(BaseModel):
    """The operator-managed parameters; None = not set at this level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hotline: Annotated[str, _gbk_width(20)] | None = None
    merchant_name: Annotated[str, _gbk_width(40)] | None = None
    txn_mask: Annotated[str, Field(pattern=r"^[01]{16}$")] | None = None
    purchase_cap_minor: Amount | None = None
    refund_cap_minor: Amount | None = None
    transfer_cap_minor: Amount | None = None
    small_amount_enabled: bool | None = None
    small_amount_limit_minor: Amount | None = None

    def over(self, override: ParamValues) -> ParamValues:
        """These values with every value ``override`` sets replacing them."""
        return self.model_copy(update=override.model_dump(exclude_none=True))


class Scope(enum.StrEnum):
    GROUP = "group"
    TERMINAL = "terminal"


@dataclass(frozen=True, slots=True)
class ParamSet:
    scope: Scope
    scope_id: str
    version: int
    values: ParamValues


@dataclass(frozen=True, slots=True)
class EffectiveParams:
    """What a terminal should hold: group defaults under its own overrides."""

    version: int
    values: ParamValues


#: Equal effective parameter sets, shared: most terminals of a group hold the
#: same one, and the switch caches one per signed-in terminal.  Bounded.
_INTERNED: dict[EffectiveParams, EffectiveParams] = {}
_INTERNED_MAX = 4096


def effective(
    group: ParamSet | None, terminal: ParamSet | None, membership_version: int = 0
) -> EffectiveParams:
    values = ParamValues()
    version = membership_version
    for level in (group, terminal):
        if level is not None:
            values = values.over(level.values)
            version = max(version, level.version)
    found = EffectiveParams(version, values)
    if len(_INTERNED) >= _INTERNED_MAX:
        _INTERNED.clear()
    return _INTERNED.setdefault(found, found)


def to_f62(
    params: EffectiveParams, *, terminal_id: str, merchant_id: str, batch: str
) -> TerminalParameters:
    """The F62 content of a 360 answer (§10 keys; ``90`` = the set's version)."""
    v = params.values
    small = None
    if v.small_amount_enabled is not None or v.small_amount_limit_minor is not None:
        small = SmallAmount(bool(v.small_amount_enabled), v.small_amount_limit_minor or 0)
    return TerminalParameters(
        hotline=v.hotline,
        merchant_name=v.merchant_name,
        txn_mask=v.txn_mask,
        merchant_id=merchant_id,
        terminal_id=terminal_id,
        batch=batch,
        purchase_cap_minor=v.purchase_cap_minor,
        refund_cap_minor=v.refund_cap_minor,
        transfer_cap_minor=v.transfer_cap_minor,
        small_amount=small,
        version=params.version,
    )


def cap_minor(kind: CapKind, values: ParamValues) -> int | None:
    """The terminal's own single cap of ``kind`` (§10 keys 37-39), None if unset."""
    return {
        CapKind.PURCHASE: values.purchase_cap_minor,
        CapKind.REFUND: values.refund_cap_minor,
        CapKind.TRANSFER: values.transfer_cap_minor,
    }[kind]


def over_cap(kind: CapKind, amount_minor: int, values: ParamValues) -> bool:
    """True when ``amount_minor`` exceeds the terminal's single cap (answer 61)."""
    cap = cap_minor(kind, values)
    return cap is not None and amount_minor > cap


def _older(held: int | None, current: int) -> bool:
    return current > 0 and (held is None or held < current)


def processing_digit(
    held_version: int | None,
    current_version: int,
    update_waiting: bool,
    *,
    held_capk: int | None = None,
    current_capk: int = 0,
    held_aid: int | None = None,
    current_aid: int = 0,
) -> str:
    """Header digit 6 (§1, §8, §10) from the terminal's stored versions: ``1``
    parameters older than the current set, ``4`` / ``5`` the switch's CAPK / AID
    set newer than what the terminal last downloaded, ``6`` a software update
    waits for it, else ``0`` (``3``, sign in again, is decided before this)."""
    if _older(held_version, current_version):
        return "1"
    if _older(held_capk, current_capk):
        return "4"
    if _older(held_aid, current_aid):
        return "5"
    return "6" if update_waiting else "0"
