"""What each terminal-link response code (field 39) means, for the fleet's report.

The meanings are the switch's own: ``posp.pipeline.codes.ResponseCode`` carries
terminal-link.md §7–§11 with each code's meaning.  Invariant: ``meaning``
answers every code, known or not.
"""

from __future__ import annotations

from posp.pipeline.codes import response_code

UNKNOWN: str = "not in terminal-link §7"


def meaning(code: str) -> str:
    """The meaning of ``code`` (terminal-link §7), or says it is not in the spec."""
    known = response_code(code)
    return UNKNOWN if known is None else known.meaning.lower()
