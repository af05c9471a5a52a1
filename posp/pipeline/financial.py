"""The network part of card transactions: the steps after the checks.

``FORWARD`` (balance, purchase, voids, refund, pre-auth, pre-auth void,
completion, completion void) and ``REVERSE`` (0400) are appended to the routes'
check steps by ``posp.pipeline.routes``:

* FORWARD: link signed on (else 91 at once) → clear track data (TDK) → the
  original a void/refund/completion names, checked (25 / 12 / 64) → PIN
  TPK→ZPK (99 on an undecipherable block) → send with a deadline; answer,
  decline or 98 with a queued 0420 (``posp.pipeline.forward``).
* REVERSE: journal the 0400 (a repeat is noted, not refused) → its MAC (kept
  for later when the HSM cannot answer) → reverse the original once through
  the SAF queue, answer 00 (``posp.pipeline.reversal``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from posp.pipeline import cardsec, forward, originals, reversal

if TYPE_CHECKING:
    from posp.pipeline.routes import Step


FORWARD: Final[tuple[Step, ...]] = (
    forward.require_link,
    cardsec.decrypt_tracks,
    originals.find_original,
    cardsec.translate_pin,
    forward.forward,
)
REVERSE: Final[tuple[Step, ...]] = (
    reversal.journal_reversal,
    reversal.verify_or_defer,
    reversal.reverse_original,
)
