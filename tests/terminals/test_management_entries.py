"""The terminal splits a 372/382 list answer into one identifying TLV per entry
(each starts at 9F06), whatever the entries' lengths."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posp.iso8583.tlv import build_f55, decode_f55
from terminals.management import split_entries

_CAPK = st.tuples(st.binary(min_size=5, max_size=5), st.binary(min_size=1, max_size=1)).map(
    lambda rk: build_f55([("9F06", rk[0]), ("9F22", rk[1])])
)
_AID = st.binary(min_size=5, max_size=16).map(lambda aid: build_f55([("9F06", aid)]))


@given(st.lists(_CAPK, max_size=30) | st.lists(_AID, max_size=30))
def test_a_list_answer_splits_back_into_its_entries(entries: list[bytes]) -> None:
    assert split_entries(list(decode_f55(b"".join(entries), field=62))) == entries
