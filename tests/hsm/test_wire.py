"""The pure client codec: request layouts, response checks, typed errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.errors import (
    HsmCommandError,
    HsmError,
    HsmParityError,
    HsmPinBlockError,
    HsmVerificationFailed,
)
from posp.hsm import wire


def test_response_code_increments_the_second_character() -> None:
    assert wire.response_code_for(b"A0") == b"A1"
    assert wire.response_code_for(b"M8") == b"M9"
    assert wire.response_code_for(b"NC") == b"ND"


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=8))
def test_headers_are_zero_padded_decimal_of_the_configured_length(n: int, length: int) -> None:
    header = wire.format_header(n, length)
    assert len(header) == length and header.isdigit() and int(header) == n % 10**length


def test_b2_carries_a_four_digit_decimal_length() -> None:
    assert wire.build_echo("PING") == b"B20004PING"


def test_m8_carries_a_4h_length_and_the_mac_as_hex() -> None:
    request = wire.build_mac(b"M8", "003", "0123456789ABCDEF", b"x" * 26, "09", "1", b"1A2B3C4D")
    assert request == b"M80009" + b"1003" + b"0123456789ABCDEF" + b"001A" + b"x" * 26 + (
        b"3141324233433444"
    )


def test_a0_mode1_under_a_tmk_uses_the_tmk_flag() -> None:
    request = wire.build_generate_key("002", "U", "X" + "A" * 32, "tmk", "X")
    assert request == b"A01002U;1X" + b"A" * 32 + b"X"


def test_ca_layout_follows_the_reference() -> None:
    request = wire.build_translate_pin(
        b"CA", "U" + "1" * 32, "U" + "2" * 32, "0123456789ABCDEF", "123456789012", "01", "01", 12
    )
    assert request == (
        b"CAU" + b"1" * 32 + b"U" + b"2" * 32 + b"12" + b"0123456789ABCDEF0101123456789012"
    )


def test_bu_asks_for_a_6h_or_16h_check_value() -> None:
    assert (
        wire.build_check_value("002", "U" + "0" * 32, False) == b"BUFF1U" + b"0" * 32 + b";002;001"
    )
    assert wire.build_check_value("003", "0" * 16, True) == b"BUFF0" + b"0" * 16 + b";003;000"


def test_k0_puts_the_count_after_type_and_scheme() -> None:
    assert wire.build_form_key_clear("002", ["A" * 32], "U") == b"K0002U1" + b"A" * 32


def test_component_counts_outside_the_limits_are_refused_before_sending() -> None:
    with pytest.raises(ValueError):
        wire.build_form_key("000", ["U" + "0" * 32], "U")


@pytest.mark.parametrize(
    ("code", "exc"),
    [
        (b"01", HsmVerificationFailed),
        (b"10", HsmParityError),
        (b"11", HsmParityError),
        (b"20", HsmPinBlockError),
        (b"24", HsmPinBlockError),
        (b"68", HsmCommandError),
    ],
)
def test_error_codes_raise_the_typed_exception(code: bytes, exc: type[HsmCommandError]) -> None:
    with pytest.raises(exc) as caught:
        wire.check_response(b"CA", b"CB" + code)
    assert caught.value.error_code == code.decode() and caught.value.command == "CA"


def test_a_wrong_response_code_is_an_hsm_error_not_a_result() -> None:
    with pytest.raises(HsmError):
        wire.check_response(b"CA", b"CD00")


def test_fa_advice_only_01_still_returns_the_key() -> None:
    response = b"FB01U" + b"A" * 32 + b"B3E1C8"
    imported = wire.parse_imported(b"FA", response)
    assert imported.under_lmk == "U" + "A" * 32 and imported.kcv == "B3E1C8"


def test_verify_replies_map_00_to_true_01_to_false_and_others_raise() -> None:
    assert wire.parse_verify(b"M8", b"M900") is True
    assert wire.parse_verify(b"M8", b"M901") is False
    with pytest.raises(HsmParityError):
        wire.parse_verify(b"DC", b"DD10")


def test_mac_replies_give_4_bytes_for_01_and_8_for_13_and_09() -> None:
    assert wire.parse_mac(b"M700C57E4295", "03") == bytes.fromhex("C57E4295")
    assert wire.parse_mac(b"M7003132333435363738", "09") == b"12345678"
    assert wire.parse_mac(b"M7000011223344556677", "13") == bytes.fromhex("0011223344556677")


def test_the_reference_a0_reply_splits_into_keys_and_kcv() -> None:
    reply = b"A100U61F612B4FD859AA204D0D2414F18C29FU631EAA5F7E6A6C9EB5A1701259A7AB54B3E1C8"
    key = wire.parse_generate_key(reply, exported=True)
    assert key.under_lmk == "U61F612B4FD859AA204D0D2414F18C29F"
    assert key.under_wrap == "U631EAA5F7E6A6C9EB5A1701259A7AB54" and key.kcv == "B3E1C8"


def test_a3_gives_the_clear_component_and_the_one_under_the_lmk() -> None:
    clear, under_lmk = wire.parse_generate_component(b"A300U" + b"1" * 32 + b"2" * 32)
    assert clear == "2" * 32 and under_lmk == "U" + "1" * 32


@given(st.binary(max_size=60))
def test_parsers_never_fail_with_anything_but_hsm_errors(reply: bytes) -> None:
    """Garbage from the HSM becomes an HsmError, never an IndexError or a wrong result."""
    for prefix, parse in (
        (b"A100", lambda r: wire.parse_generate_key(r, exported=True)),
        (b"CB00", lambda r: wire.parse_translate_pin(b"CA", r)),
        (b"M700", lambda r: wire.parse_mac(r, "09")),
        (b"M300", wire.parse_decrypt_data),
        (b"ND00", wire.parse_diagnostics),
        (b"A300", wire.parse_generate_component),
    ):
        try:
            parse(prefix + reply)
        except HsmError:
            pass
