"""The network request's MAC, started early: alongside the terminal MAC check.

A purchase costs the HSM a terminal MAC check (M8, TAK), a PIN translation (CA)
and the network request's MAC (M6, ZAK).  The first two already go out in one
write (``cardsec.start_pin_translation``).  The network MAB (network-link §5)
holds none of the fields only known later — the PIN block under the ZPK, clear
tracks, the RRN — so for the routes that reference no original it can be built
and MACed at the same moment: one HSM round trip instead of two per purchase.

Invariants:
* Only an optimisation: ``forward`` sends its own freshly built request, and
  the link reuses the early MAC only when that request's MAB is byte for byte
  the one MACed and the ZAK is still current (``NetworkLink.send(early=...)``);
  otherwise it MACs again.  The outcome of the early task (or its error) is
  looked at only there, so a bad terminal MAC still answers A0, a duplicate
  94, and so on.
* The network STAN the early request reserved is used by the request sent;
  when the request is refused before forwarding, that STAN is simply skipped
  (``posp.network.ids``: gaps are allowed).
* It starts only where the MAC check starts, i.e. for a registered, enabled
  terminal with current working keys and valid fields: a request whose MAC
  then fails has cost one extra HSM command and one skipped STAN, nothing else.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from posp.network.mapping import network_request
from posp.pipeline.context import TxnContext, discard_outcome

_NO_RRN: Final = "000000000000"  # F37 is not in the MAB; the real RRN is set later


def start_network_mac(ctx: TxnContext) -> None:
    """Start the network request's MAC now when the route allows it and the link can
    carry traffic; otherwise do nothing (``forward`` MACs as if never called)."""
    link = ctx.services.link
    if (
        not ctx.route.row.early_mac  # its MAB needs an original (F90) or more
        or link is None
        or not link.signed_on
        or ctx.merchant is None
    ):
        return
    try:
        early = network_request(
            ctx.route.row,
            ctx.message,
            merchant=ctx.merchant,
            pin_block_zpk=None,
            track2=None,
            track3=None,
            rrn=_NO_RRN,
            original=None,
        )
    except (KeyError, ValueError):
        return
    task = asyncio.ensure_future(link.premac(early))
    task.add_done_callback(discard_outcome)
    ctx.early_mac = task


async def settle_early_mac(ctx: TxnContext) -> Any:
    """Wait for the early MAC (``posp.network.link.EarlyMac``) and keep it for
    ``take_early_mac``; None when there is none or it failed (the link then MACs
    the request itself).  Its ids (F7, F11) are the ones the request will carry."""
    early = ctx.early_mac
    if not isinstance(early, asyncio.Future):
        return early
    try:
        result = await early
    except Exception:  # HSM trouble shows again, and is answered, when the link MACs
        result = None
    ctx.early_mac = result
    return result


async def take_early_mac(ctx: TxnContext) -> Any:
    """The early MAC, once (see ``settle_early_mac``)."""
    result = await settle_early_mac(ctx)
    ctx.early_mac = None
    return result
