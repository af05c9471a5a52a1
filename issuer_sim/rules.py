"""Behaviour injection for the issuer simulator: latency, dropped answers, forced codes.

The demo rules (docs/contracts.md "issuer_sim demo rules") are fixed constants the
conformance catalogue relies on: amount :data:`DROP_AMOUNT_MINOR` is never answered
(provokes a switch timeout and a reversal) and :data:`FORCE_51_AMOUNT_MINOR` is
declined 51.  Card-status codes (lost 41, stolen 43, restricted 57, expired 54) come
from the card itself, not from here.

:class:`Rules` is a plain mutable object: tests and the HTTP control endpoint change
it while the server runs; the server reads it on every request (no locking needed,
one event loop).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final

from posp.iso8583 import mask_pan

DROP_AMOUNT_MINOR: Final = 99404
FORCE_51_AMOUNT_MINOR: Final = 99451

#: What :meth:`Rules.verdict` returns when nothing is injected.
ANSWER: Final = ""
#: A verdict asking the server to send no response at all.
DROP: Final = "drop"


@dataclass
class Rules:
    """Injected behaviour.  Forced codes are two-character response codes."""

    latency_ms: float = 0.0
    drop_rate: float = 0.0  # probability of silently dropping a financial response
    drop_amounts_minor: set[int] = field(default_factory=lambda: {DROP_AMOUNT_MINOR})
    forced_by_amount: dict[int, str] = field(default_factory=lambda: {FORCE_51_AMOUNT_MINOR: "51"})
    forced_by_pan: dict[str, str] = field(default_factory=dict)
    key_exchange_interval_s: float = 0.0  # 0 = the issuer never initiates key exchange
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def verdict(self, pan: str | None, amount_minor: int | None) -> str:
        """:data:`DROP`, a forced response code, or :data:`ANSWER` (decide normally)."""
        if amount_minor is not None and amount_minor in self.drop_amounts_minor:
            return DROP
        if self.drop_rate > 0.0 and self.rng.random() < self.drop_rate:
            return DROP
        if pan is not None and pan in self.forced_by_pan:
            return self.forced_by_pan[pan]
        if amount_minor is not None and amount_minor in self.forced_by_amount:
            return self.forced_by_amount[amount_minor]
        return ANSWER

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view for the control endpoint (PANs masked)."""
        return {
            "latency_ms": self.latency_ms,
            "drop_rate": self.drop_rate,
            "drop_amounts_minor": sorted(self.drop_amounts_minor),
            "forced_by_amount": {str(k): v for k, v in sorted(self.forced_by_amount.items())},
            "forced_by_pan": {mask_pan(k): v for k, v in sorted(self.forced_by_pan.items())},
            "key_exchange_interval_s": self.key_exchange_interval_s,
        }

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON patch from the control endpoint; ``ValueError`` on a bad key/value."""
        for key, value in changes.items():
            if key == "latency_ms":
                self.latency_ms = _non_negative(key, value)
            elif key == "drop_rate":
                rate = _non_negative(key, value)
                if rate > 1.0:
                    raise ValueError("drop_rate must be within 0..1")
                self.drop_rate = rate
            elif key == "drop_amounts_minor":
                self.drop_amounts_minor = {int(v) for v in value}
            elif key == "forced_by_amount":
                self.forced_by_amount = {int(k): _code(v) for k, v in dict(value).items()}
            elif key == "forced_by_pan":
                self.forced_by_pan = {str(k): _code(v) for k, v in dict(value).items()}
            elif key == "key_exchange_interval_s":
                self.key_exchange_interval_s = _non_negative(key, value)
            else:
                raise ValueError(f"unknown rule {key!r}")


def demo_rules() -> Rules:
    """The demo configuration every program starts with."""
    return Rules()


def _non_negative(name: str, value: Any) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0")
    return number


def _code(value: Any) -> str:
    code = str(value)
    if len(code) != 2 or not code.isalnum():
        raise ValueError("a forced response code is 2 alphanumeric characters")
    return code
