"""PIN blocks: ISO format 0 with/without PAN, format 03, cross-checked with psec."""

from __future__ import annotations

import psec.pinblock
import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.crypto.pinblock import account12, format03_clear, format03_pin, iso0_clear, iso0_pin
from posp.errors import PinBlockError

# psec itself uses the deprecated TripleDES import and short keys.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

pins = st.text("0123456789", min_size=4, max_size=12)
pans = st.text("0123456789", min_size=13, max_size=19)


@given(pins, pans)
def test_iso0_round_trip_and_matches_psec(pin: str, pan: str) -> None:
    """Format 0 with PAN round-trips and equals psec's ISO 0 encoding."""
    clear = iso0_clear(pin, pan)
    assert clear == psec.pinblock.encode_pinblock_iso_0(pin, pan)
    assert iso0_pin(clear, pan) == pin


@given(pins)
def test_iso0_without_pan_round_trip(pin: str) -> None:
    """Format 0 without PAN (F53 '1') is the bare PIN field and round-trips."""
    clear = iso0_clear(pin, None)
    assert clear.hex().upper() == f"0{len(pin):X}{pin}".ljust(16, "F")
    assert iso0_pin(clear, None) == pin


@given(pins)
def test_format03_round_trip(pin: str) -> None:
    """Format 03 is the PIN then F fill, and round-trips."""
    clear = format03_clear(pin)
    assert clear.hex().upper() == pin.ljust(16, "F")
    assert format03_pin(clear) == pin


def test_account12_excludes_check_digit() -> None:
    """account12 takes the 12 rightmost digits before the check digit."""
    assert account12("6222021234567890123") == "123456789012"
    assert account12("12345") == "000000001234"
    assert account12("6225880000000001") == "588000000000"


def test_iso0_wrong_pan_is_rejected() -> None:
    """Decoding with another PAN breaks the block structure and raises PinBlockError."""
    clear = iso0_clear("1234", "6225880000000001")
    with pytest.raises(PinBlockError):
        iso0_pin(clear, "6222021234567890123")


@pytest.mark.parametrize(
    "block",
    ["16126CD6FFFFFFFF", "03126CD6FFFFFFFF", "0612A456FFFFFFFF", "061234560FFFFFFF", "00"],
)
def test_iso0_invalid_blocks_raise(block: str) -> None:
    """Bad control nibble, length, digits, fill or size raise PinBlockError."""
    with pytest.raises(PinBlockError):
        iso0_pin(bytes.fromhex(block), None)


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4"])
def test_invalid_pins_raise(pin: str) -> None:
    """PINs outside 4-12 digits raise PinBlockError for every builder."""
    with pytest.raises(PinBlockError):
        iso0_clear(pin, None)
    with pytest.raises(PinBlockError):
        format03_clear(pin)


def test_format03_invalid_block_raises() -> None:
    """A format 03 block with a non-digit before the fill is rejected."""
    with pytest.raises(PinBlockError):
        format03_pin(bytes.fromhex("12A4FFFFFFFFFFFF"))
