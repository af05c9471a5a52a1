"""Delays between reconnects and retries: exponential ceilings with full jitter.

Every reconnect loop (network link, HSM connections) and the store-and-forward
retries use this one helper.  The n-th delay is drawn uniformly from
``[0, min(max_s, min_s * 2**n)]`` ("full jitter"): when a peer comes back, the
switch instances and connections that lost it do not all knock at the same
instant, and the expected delay still doubles per failure.

Pure (no asyncio): callers sleep for what it returns.
"""

from __future__ import annotations

import random
from typing import Final

#: Exponents beyond this add nothing but float overflow risk.
_MAX_EXPONENT: Final = 30


def ceiling_s(attempts: int, min_s: float, max_s: float) -> float:
    """The upper bound of the delay after ``attempts`` failures: min_s·2^n, capped."""
    return float(min(max_s, min_s * 2 ** min(max(attempts, 0), _MAX_EXPONENT)))


def full_jitter_s(
    attempts: int, min_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """A delay drawn uniformly from [0, ceiling_s(attempts, min_s, max_s)]."""
    return (rng or _RNG).uniform(0.0, ceiling_s(attempts, min_s, max_s))


class Backoff:
    """The delays of one reconnect loop: ``next_s()`` after each failure, ``reset()``
    once connected again."""

    def __init__(self, min_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng or _RNG
        self.attempts = 0

    def next_s(self) -> float:
        delay_s = full_jitter_s(self.attempts, self.min_s, self.max_s, self._rng)
        self.attempts += 1
        return delay_s

    def reset(self) -> None:
        self.attempts = 0


_RNG: Final = random.Random()
