"""Sub-field helpers: layouts, round trips and errors naming the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.errors import DecodeError, EncodeError
from posp.iso8583.fields import (
    Balance,
    Field60,
    Field61,
    OriginalData,
    SettlementF48,
    SettlementTotalsF48,
    UploadRecord,
    parse_transfer_f62,
    parse_upload_end_f48,
    parse_upload_f48,
    render_f44,
    render_transfer_f62,
    render_upload_end_f48,
    render_upload_f48,
)

PAN = "6225880000000001"


def test_field60_parses_the_three_mandatory_subfields_and_extras() -> None:
    assert Field60.parse("22000001000") == Field60("22", "000001", "000")
    assert Field60.parse("22000001000520") == Field60("22", "000001", "000", "520")
    assert Field60("00", "000123", "003", "5").render() == "000001230035"


@pytest.mark.parametrize("bad", ["2200000100", "22000001000A", "2" * 18])
def test_field60_rejects_malformed_values(bad: str) -> None:
    with pytest.raises(DecodeError) as info:
        Field60.parse(bad)
    assert info.value.field == 60 and bad not in str(info.value)


def test_field60_render_checks_widths() -> None:
    with pytest.raises(EncodeError) as info:
        Field60("2", "000001", "000").render()
    assert info.value.field == 60


def test_field61_batch_trace_and_optional_date() -> None:
    assert Field61.parse("000001000123") == Field61("000001", "000123")
    assert Field61.parse("0000000000000315") == Field61("000000", "000000", "0315")
    assert Field61("000001", "000123", "0315", "99").render() == "000001000123031599"
    with pytest.raises(DecodeError):
        Field61.parse("00000100012303")


def test_settlement_f48_is_62_digits_domestic_then_foreign() -> None:
    f48 = SettlementF48(SettlementTotalsF48(12345, 3, 500, 1), SettlementTotalsF48(0, 0, 0, 0))
    text = f48.render()
    assert text == "000000012345003000000000500001" + "0" + "0" * 31
    assert SettlementF48.parse(text) == f48


def test_settlement_counts_over_999_are_refused() -> None:
    with pytest.raises(EncodeError):
        SettlementTotalsF48(0, 1000, 0, 0).render()


def test_upload_f48_records_zero_fill_the_pan() -> None:
    records = [UploadRecord("00", "000012", PAN, 100), UploadRecord("01", "000013", PAN, 5)]
    text = render_upload_f48(records)
    assert text[:2] == "02" and len(text) == 82
    assert text[2:42] == "00" + "000012" + "0000" + PAN + "000000000100"
    assert parse_upload_f48(text) == records


def test_upload_f48_allows_at_most_eight_records_and_matching_count() -> None:
    with pytest.raises(EncodeError):
        render_upload_f48([UploadRecord("00", "000001", PAN, 1)] * 9)
    with pytest.raises(DecodeError):
        parse_upload_f48("02" + "0" * 40)


def test_upload_record_repr_masks_the_pan() -> None:
    assert PAN not in repr(UploadRecord("00", "000012", PAN, 100))


def test_upload_end_f48_is_four_digits() -> None:
    assert render_upload_end_f48(17) == "0017" and parse_upload_end_f48("0017") == 17
    with pytest.raises(DecodeError):
        parse_upload_end_f48("017")


def test_balance_layout() -> None:
    balance = Balance("10", "01", "156", "C", 123456)
    assert balance.render() == "1001156C000000123456"
    assert Balance.parse("1001156C000000123456") == balance
    with pytest.raises(DecodeError):
        Balance.parse("1001156X000000123456")
    with pytest.raises(EncodeError):
        Balance("10", "01", "156", "+", 1).render()


def test_original_data_zero_fills_institution_ids() -> None:
    data = OriginalData("0200", "000123", "0315120210", "48020000", "48020000")
    text = data.render()
    assert text == "0200" + "000123" + "0315120210" + "00048020000" * 2 and len(text) == 42
    assert OriginalData.parse(text) == data


def test_f44_pads_ids_with_spaces() -> None:
    assert render_f44("0801", "4802") == "0801       4802       "
    with pytest.raises(EncodeError):
        render_f44("1" * 12, "")


@given(st.text("0123456789", min_size=11, max_size=17))
def test_field60_round_trips(s: str) -> None:
    assert Field60.parse(s).render() == s


@given(st.text("0123456789", min_size=62, max_size=62))
def test_settlement_round_trips(s: str) -> None:
    assert SettlementF48.parse(s).render() == s


@given(st.text("0123456789", min_size=42, max_size=42))
def test_original_data_round_trips(s: str) -> None:
    assert OriginalData.parse(s).render() == s


# --- F62 usage 10 (transfer receiving card) ------------------------------------------


@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_transfer_f62_round_trips_any_card_number(pan: str) -> None:
    """render then parse gives the card number back; the layout is 10 + n2 + digits."""
    f62 = render_transfer_f62(pan)
    assert f62[:4] == f"10{len(pan):02d}".encode()
    assert parse_transfer_f62(f62) == pan


@given(st.binary(max_size=30))
def test_transfer_f62_parse_accepts_only_well_formed_values(data: bytes) -> None:
    """Any bytes either parse to 13-19 digits or raise DecodeError naming field 62."""
    try:
        pan = parse_transfer_f62(data)
    except DecodeError as exc:
        assert exc.field == 62
    else:
        assert pan.isdigit() and 13 <= len(pan) <= 19 and data == render_transfer_f62(pan)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"11166225880000000000",
        b"1017622588000000000001",
        b"1013ABCDEFGHIJKLM",
        b"1005" + b"1" * 5,
    ],
)
def test_transfer_f62_rejects_other_usages_lengths_and_non_digits(bad: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        parse_transfer_f62(bad)
    assert info.value.field == 62
