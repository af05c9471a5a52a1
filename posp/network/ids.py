"""Identifiers the switch assigns on the network link: RRN (F37) and network STAN (F11).

Uniqueness across switch instances comes from the store's shared sequences: an
instance reserves a *block* of :data:`BLOCK_SIZE` numbers with one
``store.next_sequence`` call and hands them out from memory, so an identifier costs
no database round trip except once per block.

* RRN (an12) = node id (2 digits) + 10 digits ``(block * BLOCK_SIZE + i) mod 10**10``.
  Two instances never share a block, so RRNs are unique across instances until the
  10-digit counter wraps (10**10 RRNs); the node id adds a second guard.
* Network STAN (n6) = ``(block * BLOCK_SIZE + i) mod 999999 + 1`` (1..999999, never
  000000).  The spec asks for a STAN unique per link per day: all instances draw from
  one sequence, so a STAN repeats only after 999,999 requests across the whole
  deployment, and a response is matched by (F11, F7, F32), which also carries the
  transmission second.  Blocks abandoned by a restart just leave gaps.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

BLOCK_SIZE: Final = 1000
RRN_MODULUS: Final = 10**10
STAN_MODULUS: Final = 999_999


class SequenceSource(Protocol):
    """The part of ``posp.store.api.Store`` this module needs."""

    async def next_sequence(self, name: str) -> int: ...


class _BlockCounter:
    """Numbers from blocks reserved in a shared sequence; safe for concurrent callers."""

    def __init__(self, store: SequenceSource, name: str) -> None:
        self._store = store
        self._name = name
        self._next = 0
        self._end = 0  # exclusive; _next == _end means a new block is needed
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        if self._next < self._end:  # fast path: no await, no lock
            value = self._next
            self._next += 1
            return value
        async with self._lock:
            if self._next >= self._end:
                block = await self._store.next_sequence(self._name)
                self._next, self._end = block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE
            value = self._next
            self._next += 1
            return value


class IdAllocator:
    """RRNs and network STANs unique across switch instances sharing one store."""

    def __init__(self, store: SequenceSource, node_id: int) -> None:
        if not 0 <= node_id <= 99:
            raise ValueError("node_id must be 0..99")
        self._node = f"{node_id:02d}"
        self._rrn = _BlockCounter(store, "rrn")
        self._stan = _BlockCounter(store, "network_stan")

    async def next_rrn(self) -> str:
        """An12 retrieval reference number: node id + 10 digits."""
        return self._node + f"{await self._rrn.next() % RRN_MODULUS:010d}"

    async def next_stan(self) -> str:
        """N6 network trace number 000001..999999."""
        return f"{await self._stan.next() % STAN_MODULUS + 1:06d}"
