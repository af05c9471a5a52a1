"""TMS codecs of terminal-link.md §10: F62 parameters, F59 identity, 362 status."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.errors import DecodeError, EncodeError
from posp.iso8583.tms_identity import TerminalIdentity, TerminalStatus
from posp.iso8583.tms_params import SmallAmount, TerminalParameters, split_f62

SAMPLE = TerminalParameters(
    hotline="95516",
    merchant_name="上海测试商户",
    txn_mask="1111000011110000",
    merchant_id="123456789012345",
    terminal_id="10000001",
    batch="000001",
    purchase_cap_minor=5_000_000,
    refund_cap_minor=100_000,
    transfer_cap_minor=2_000_000,
    small_amount=SmallAmount(True, 100_000),
    version=7,
)


def test_f62_keys_are_two_ascii_digits_then_fixed_width_gbk_or_digits() -> None:
    data = TerminalParameters(hotline="95516", purchase_cap_minor=12345).render()
    assert data == b"17" + b"95516".ljust(20) + b"37000000012345"
    assert TerminalParameters.parse(data) == TerminalParameters(
        hotline="95516", purchase_cap_minor=12345
    )


def test_f62_merchant_name_is_gbk_space_padded_to_40_bytes() -> None:
    data = TerminalParameters(merchant_name="上海测试商户").render()
    assert data == b"22" + "上海测试商户".encode("gbk") + b" " * 28


def test_f62_full_set_round_trips_and_fits_one_message() -> None:
    assert TerminalParameters.parse(SAMPLE.render()) == SAMPLE
    assert split_f62(SAMPLE) == [SAMPLE.render()]


def test_f62_split_never_cuts_an_entry() -> None:
    chunks = split_f62(SAMPLE, max_bytes=60)
    assert len(chunks) > 1 and all(len(c) <= 60 for c in chunks)
    assert TerminalParameters.parse(b"".join(chunks)) == SAMPLE


@pytest.mark.parametrize(
    ("data", "offset", "words"),
    [
        (b"99" + b"0" * 12, 0, "unknown"),
        (b"37" + b"12", 2, "truncated"),
        (b"370000000000013700000000000", 14, "repeated"),
        (b"37ABCDEFGHIJKL", 2, "digits"),
        (b"402000000000000", 2, "flag"),
        (b"17\x81" + b" " * 19, 2, "GBK"),
    ],
)
def test_f62_errors_name_field_62_and_the_offset(data: bytes, offset: int, words: str) -> None:
    with pytest.raises(DecodeError) as info:
        TerminalParameters.parse(data)
    assert info.value.field == 62 and info.value.offset == offset and words in info.value.reason


@pytest.mark.parametrize(
    "bad",
    [
        TerminalParameters(hotline="x" * 21),
        TerminalParameters(purchase_cap_minor=10**12),
        TerminalParameters(batch="12"),
        TerminalParameters(merchant_name="trailing "),
        TerminalParameters(hotline="\u20ac"),  # the euro sign is not in GBK
    ],
)
def test_f62_render_refuses_values_that_do_not_fit(bad: TerminalParameters) -> None:
    with pytest.raises(EncodeError) as info:
        bad.render()
    assert info.value.field == 62


def test_f62_merge_lets_terminal_overrides_win() -> None:
    group = TerminalParameters(hotline="95516", purchase_cap_minor=100)
    merged = group.merged(TerminalParameters(purchase_cap_minor=5))
    assert merged == TerminalParameters(hotline="95516", purchase_cap_minor=5)


_GBK_TEXT = st.text(st.sampled_from("abcXYZ0189 -_.上海北京商户测试银联"), max_size=10).map(
    lambda s: s.rstrip(" ")
)
_AMOUNT = st.integers(0, 10**12 - 1)
PARAMS = st.builds(
    TerminalParameters,
    hotline=st.none() | _GBK_TEXT,
    merchant_name=st.none() | _GBK_TEXT,
    txn_mask=st.none() | st.text("01", min_size=16, max_size=16),
    batch=st.none() | st.text("0123456789", min_size=6, max_size=6),
    purchase_cap_minor=st.none() | _AMOUNT,
    refund_cap_minor=st.none() | _AMOUNT,
    small_amount=st.none() | st.builds(SmallAmount, st.booleans(), _AMOUNT),
    version=st.none() | st.integers(0, 10**8 - 1),
)


@given(PARAMS)
def test_f62_parse_inverts_render(params: TerminalParameters) -> None:
    assert TerminalParameters.parse(params.render()) == params


@given(st.binary(max_size=200))
def test_f62_garbage_raises_only_decode_error(data: bytes) -> None:
    try:
        parsed = TerminalParameters.parse(data)
    except DecodeError as exc:
        assert exc.field == 62 and 0 <= exc.offset <= len(data)
    else:
        assert parsed.render() == data  # accepted input is canonical


# --- F59 --------------------------------------------------------------------------------

IDENTITY = TerminalIdentity(
    device_type="04",
    hardware_serial="000012345678ABCDEF",
    app_version="V2.1.0",
    iccid="89860012345678901234",
    location="+121.4737/+31.2304",
)


def test_f59_is_a2_with_2_digit_subtags_and_3_digit_lengths() -> None:
    assert TerminalIdentity(device_type="02").render() == "A200701002" + "02"
    text = IDENTITY.render()
    assert text.startswith("A2") and "05006V2.1.0" in text and "07018+121.4737/+31.2304" in text
    assert TerminalIdentity.parse(text) == IDENTITY


def test_f59_version_report_is_a2_05_alone() -> None:
    report = TerminalIdentity(app_version="V2.1.1")
    assert report.render() == "A201105006V2.1.1"
    assert TerminalIdentity.parse("A201105006V2.1.1").app_version == "V2.1.1"


def test_f59_keeps_unknown_subtags_and_other_top_level_tags() -> None:
    text = "A2015" + "05002V1" + "99003abc" + "B1002xy"
    parsed = TerminalIdentity.parse(text)
    assert parsed.extra == (("99", "abc"),) and parsed.other_tags == (("B1", "xy"),)
    assert parsed.render() == text


def test_f59_location_may_be_a_base_station_id() -> None:
    ident = TerminalIdentity(location="460-00-4173-27652")
    assert TerminalIdentity.parse(ident.render()) == ident


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("B1002xy", "no A2"),
        ("A2005010", "shorter"),
        ("A20070100209", "device_type"),
        ("A2023" + "07018+191.0000/+31.0000", "location"),
        ("A2", "bad tag"),
    ],
)
def test_f59_errors_name_field_59(text: str, words: str) -> None:
    with pytest.raises(DecodeError) as info:
        TerminalIdentity.parse(text)
    assert info.value.field == 59 and words in info.value.reason


def test_f59_render_refuses_an_app_version_over_8_characters() -> None:
    with pytest.raises(EncodeError) as info:
        TerminalIdentity(app_version="V10.20.300").render()
    assert info.value.field == 59


IDENTITIES = st.builds(
    TerminalIdentity,
    device_type=st.none() | st.sampled_from(["02", "03", "04"]),
    hardware_serial=st.none() | st.text("0123456789ABCDEF", min_size=1, max_size=50),
    app_version=st.none() | st.text("V0123456789.", min_size=1, max_size=8),
    iccid=st.none() | st.text("0123456789", min_size=18, max_size=22),
    location=st.none()
    | st.builds(
        lambda lon, lat: f"{lon:+.4f}/{lat:+.4f}",
        st.floats(-180, 180),
        st.floats(-90, 90),
    ),
)


@given(IDENTITIES)
def test_f59_parse_inverts_render(ident: TerminalIdentity) -> None:
    assert TerminalIdentity.parse(ident.render()) == ident


@given(st.text(max_size=80))
def test_f59_garbage_raises_only_decode_error(text: str) -> None:
    try:
        TerminalIdentity.parse(text)
    except DecodeError as exc:
        assert exc.field == 59


# --- 362 status --------------------------------------------------------------------------


def test_362_status_carries_versions_and_the_last_refusal_in_gbk() -> None:
    status = TerminalStatus(
        param_version="7", app_version="V2.1.0", install_result="验证签名失败:tampered"
    )
    data = status.render()
    assert data.startswith(b"010017") and "验证签名失败".encode("gbk") in data
    assert TerminalStatus.parse(data) == status


@given(
    st.builds(
        TerminalStatus,
        param_version=st.none() | st.text("0123456789", min_size=1, max_size=8),
        app_version=st.none() | st.text("V0123456789.", min_size=1, max_size=8),
        tamper=st.none() | st.sampled_from(["0", "1"]),
        install_result=st.none() | _GBK_TEXT.filter(bool),
    )
)
def test_362_status_parse_inverts_render(status: TerminalStatus) -> None:
    assert TerminalStatus.parse(status.render()) == status


@given(st.binary(max_size=120))
def test_362_status_garbage_raises_only_decode_error(data: bytes) -> None:
    try:
        TerminalStatus.parse(data)
    except DecodeError as exc:
        assert exc.field == 62


def test_f59_subtag_error_offset_counts_from_the_start_of_f59() -> None:
    """A2 (5 characters of tag and length) then sub-tag 05 whose value is cut short."""
    with pytest.raises(DecodeError) as info:
        TerminalIdentity.parse("B1002xy" + "A2008" + "05009V1.")
    assert info.value.offset == 7 + 5 + 5
