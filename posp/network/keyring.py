"""Zone working keys (ZPK or ZAK, under the LMK) with rotation and a grace period.

One :class:`ZoneKey` holds the *current* key (used to MAC / translate PINs), an
optional *pending* key (offered to the peer but not yet confirmed) and the
*previous* key (still accepted until its grace period ends), so that messages in
flight during a key exchange keep verifying on both sides:

* the receiver of a key exchange calls :meth:`ZoneKey.install`: the new key is
  current at once, the old one stays acceptable for ``grace_s``;
* the sender calls :meth:`ZoneKey.offer` and keeps using the old key until the peer
  confirms (0810 ``00``) or the new key is first seen in use — then
  :meth:`ZoneKey.promote`.

Invariant: :meth:`candidates` lists the keys to try, the most likely first, and never
returns an expired previous key.  Keys are opaque LMK-encrypted strings here.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ZoneKey:
    """A rotating zone key; ``clock`` is injectable for tests (monotonic seconds)."""

    __slots__ = ("_clock", "_previous_until", "current", "grace_s", "pending", "previous")

    def __init__(
        self, current: str, grace_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.current = current
        self.pending: str | None = None
        self.previous: str | None = None
        self.grace_s = grace_s
        self._previous_until = 0.0
        self._clock = clock

    def install(self, new_key: str) -> None:
        """Use ``new_key`` from now on; the old key stays valid for the grace period."""
        if new_key == self.current:
            return
        self.previous = self.current
        self._previous_until = self._clock() + self.grace_s
        self.current = new_key
        self.pending = None

    def offer(self, new_key: str) -> None:
        """Accept ``new_key`` from the peer while still using the current key."""
        self.pending = new_key

    def promote(self) -> bool:
        """Make the pending key current (old one in grace); False when nothing pends."""
        if self.pending is None:
            return False
        self.install(self.pending)
        return True

    def candidates(self) -> list[str]:
        """Keys to accept, the current first."""
        keys = [self.current]
        if self.pending is not None:
            keys.append(self.pending)
        if self.previous is not None and self._clock() < self._previous_until:
            keys.append(self.previous)
        return keys
