"""posp.pipeline.chip's track-2 reading and chipadvice's TC bookkeeping (pure parts)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posp.pipeline.chip import service_code
from posp.pipeline.chipadvice import needs_tc
from posp.store.api import APPROVED, DECLINED, JournalEntry


@given(
    pan=st.text("0123456789", min_size=13, max_size=19),
    expiry=st.text("0123456789", min_size=4, max_size=4),
    code=st.text("0123456789", min_size=3, max_size=3),
    tail=st.text("0123456789", max_size=10),
    separator=st.sampled_from(["=", "D"]),
)
def test_service_code_is_the_three_digits_after_the_expiry(
    pan: str, expiry: str, code: str, tail: str, separator: str
) -> None:
    assert service_code(f"{pan}{separator}{expiry}{code}{tail}") == code


@given(st.text(max_size=40).filter(lambda t: "=" not in t and "D" not in t))
def test_a_track_without_separator_has_no_service_code(track: str) -> None:
    assert service_code(track) == ""


def _entry(txn_type: str, entry_mode: str, state: str = APPROVED) -> JournalEntry:
    return JournalEntry(
        "1", "m", "000001", "000001", txn_type, "0200", state=state, entry_mode=entry_mode
    )


def test_only_approved_chip_reads_of_first_presentments_need_a_tc() -> None:
    assert needs_tc(_entry("purchase", "05")) and needs_tc(_entry("preauth", "07"))
    assert not needs_tc(_entry("purchase", "02"))  # swiped
    assert not needs_tc(_entry("purchase", "80"))  # fallback swipe
    assert not needs_tc(_entry("purchase", "05", DECLINED))
    assert not needs_tc(_entry("purchase_void", "05"))
    assert not needs_tc(_entry("balance", "05"))  # moves no money, settles nothing
