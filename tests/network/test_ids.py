"""RRN and network STAN allocation from shared sequence blocks."""

from __future__ import annotations

import asyncio

from posp.network.ids import BLOCK_SIZE, IdAllocator
from tests.network.conftest import MemorySequences


async def test_rrn_is_node_id_plus_ten_digits_and_reserves_blocks() -> None:
    """RRNs are an12 with the node id first; one store call per 1000 RRNs."""
    seq = MemorySequences()
    ids = IdAllocator(seq, 7)
    rrns = [await ids.next_rrn() for _ in range(BLOCK_SIZE + 1)]
    assert all(len(r) == 12 and r.startswith("07") and r.isdigit() for r in rrns)
    assert len(set(rrns)) == len(rrns)
    assert seq.values["rrn"] == 2


async def test_two_instances_sharing_a_store_never_collide() -> None:
    """Concurrent allocators on one sequence hand out disjoint STANs and RRN numbers."""
    seq = MemorySequences()
    a, b = IdAllocator(seq, 1), IdAllocator(seq, 2)
    stans = await asyncio.gather(*(x.next_stan() for x in (a, b) for _ in range(1500)))
    assert len(set(stans)) == 3000
    rrns_a = {(await a.next_rrn())[2:] for _ in range(100)}
    rrns_b = {(await b.next_rrn())[2:] for _ in range(100)}
    assert not rrns_a & rrns_b


async def test_stan_wraps_to_000001_never_000000() -> None:
    """The network STAN runs 000001..999999 and wraps without producing 000000."""
    seq = MemorySequences()
    seq.values["network_stan"] = 998  # next block 999 → numbers 999000..999999
    ids = IdAllocator(seq, 1)
    stans = [await ids.next_stan() for _ in range(1000)]
    assert stans[998] == "999999" and stans[999] == "000001"
    assert "000000" not in stans
