"""SqliteStore._time: the hand-formatted UTC text equals strftime's, so stored text
order stays time order and old rows compare with new ones."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from posp.store.sqlite import SqliteStore

ZONES = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=8))])


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(9998, 1, 1)), ZONES)
def test_time_text_equals_strftime_of_the_utc_instant(value: dt.datetime, zone: dt.tzinfo) -> None:
    stamped = value.replace(tzinfo=zone)
    utc = stamped.replace(tzinfo=dt.UTC) if zone is None else stamped.astimezone(dt.UTC)
    store = SqliteStore(":memory:")
    assert store._time(stamped) == utc.strftime("%Y-%m-%d %H:%M:%S.%f")
