"""What each terminal-link response code (field 39) means, for the fleet's report.

The table is terminal-link.md §7, word for word in substance; the switch has no
table of meanings of its own to share (``posp.pipeline.codes`` maps exceptions to
codes).  Invariant: ``meaning`` answers every code, known or not.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

CODE_MEANINGS: Final = MappingProxyType(
    {
        "00": "approved",
        "03": "invalid merchant",
        "05": "do not honour",
        "12": "invalid transaction",
        "13": "invalid amount",
        "14": "invalid card number",
        "25": "original transaction not found",
        "30": "format error",
        "33": "expired card",
        "41": "lost card",
        "43": "stolen card",
        "51": "insufficient funds",
        "54": "expired card",
        "55": "incorrect PIN",
        "57": "not permitted to cardholder",
        "58": "not permitted to terminal",
        "59": "suspected fraud",
        "61": "exceeds amount limit",
        "64": "amount does not match the original",
        "65": "exceeds frequency limit",
        "75": "PIN tries exceeded",
        "77": "batch mismatch or not signed in",
        "91": "network / issuer unavailable",
        "94": "duplicate transaction",
        "96": "switch malfunction",
        "97": "terminal not registered",
        "98": "no answer from the network in time",
        "99": "PIN block could not be processed",
        "A0": "MAC verification failed",
    }
)


def meaning(code: str) -> str:
    """The meaning of ``code`` (terminal-link §7), or says it is not in the spec."""
    return CODE_MEANINGS.get(code, "not in terminal-link §7")
