"""The network part of card transactions: the steps after the checks.

Extension point: ``FORWARD`` (authorisations, voids, refunds, completions,
balance) and ``REVERSE`` (0400) are appended to the routes' check steps by
``posp.pipeline.routes``.  Until the network forwarding steps are written,
a request that passes every check is answered 91 (network unavailable) and
journaled as declined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from posp.errors import NetworkUnavailable

if TYPE_CHECKING:
    from posp.pipeline.context import TxnContext
    from posp.pipeline.routes import Step


async def network_not_connected(ctx: TxnContext) -> str | None:
    """91 at once: there is no card network link to forward to."""
    raise NetworkUnavailable("no card network link configured")


FORWARD: Final[tuple[Step, ...]] = (network_not_connected,)
REVERSE: Final[tuple[Step, ...]] = (network_not_connected,)
