"""What a route is: a transaction type's row (``posp.txn``) and the steps that
handle it.  A leaf module: steps, checks and the engine import it; it imports
no step.

A step is an async function of the transaction context returning ``None`` to
continue or a response code to stop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from posp.txn import MacPolicy, TxnRow, TxnType

if TYPE_CHECKING:
    from posp.pipeline.codes import ResponseCode
    from posp.pipeline.context import TxnContext

Step = Callable[["TxnContext"], Awaitable["ResponseCode | None"]]

__all__ = ["MacPolicy", "Route", "Step"]


@dataclass(frozen=True, slots=True)
class Route:
    """A transaction type's row and its steps, run in order."""

    row: TxnRow
    steps: tuple[Step, ...]

    @property
    def txn_type(self) -> TxnType:
        return self.row.txn_type

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def required(self) -> frozenset[int]:
        return self.row.required

    @property
    def any_of(self) -> tuple[frozenset[int], ...]:
        return self.row.any_of

    @property
    def mac(self) -> MacPolicy:
        return self.row.mac

    @property
    def financial(self) -> bool:
        """A card transaction: journaled with dedupe, answers carry 15/44/63."""
        return self.row.card

    @property
    def reversible(self) -> bool:
        return self.row.reversible

    @property
    def direction(self) -> str:
        return self.row.direction
