"""MACs (cross-checked with psec), track encryption and the F62 key block."""

from __future__ import annotations

import psec.mac
import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.crypto.des import adjust_odd_parity, check_value
from posp.crypto.keyblock import (
    ClearWorkingKeys,
    EncryptedWorkingKeys,
    build_f62,
    parse_f62,
    unwrap_f62,
    wrap_f62,
)
from posp.crypto.mac import cup_ecb_mac, iso9797_alg1, iso9797_alg3, pad
from posp.crypto.track import decrypt_track, encrypt_track
from posp.errors import CheckValueMismatch, CryptoError, DecodeError, EncodeError

# psec itself uses the deprecated TripleDES import and short keys.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def odd_key(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n).map(adjust_odd_parity)


@given(odd_key(16), st.binary(min_size=1, max_size=80), st.sampled_from([1, 2]))
def test_alg3_matches_psec_retail_mac(key: bytes, data: bytes, padding: int) -> None:
    """ISO 9797-1 alg 3 equals psec's retail MAC for padding 1 and 2."""
    expected = psec.mac.generate_retail_mac(key[:8], key[8:], data, padding)
    assert iso9797_alg3(key, data, padding) == expected


@given(st.one_of(odd_key(8), odd_key(16)), st.binary(min_size=1, max_size=80))
def test_alg1_matches_psec_cbc_mac(key: bytes, data: bytes) -> None:
    """ISO 9797-1 alg 1 equals psec's CBC MAC (single DES for 8-byte keys)."""
    for padding in (1, 2):
        expected = psec.mac.generate_cbc_mac(key, data, padding)
        assert iso9797_alg1(key, data, padding) == expected


def test_padding_method_1_adds_nothing_to_whole_blocks() -> None:
    """Method 1 leaves whole blocks alone; method 2 always adds 0x80; 0 refuses partials."""
    assert pad(bytes(16), 1) == bytes(16)
    assert pad(b"\x01", 1) == b"\x01" + bytes(7)
    assert pad(bytes(8), 2) == bytes(8) + b"\x80" + bytes(7)
    assert pad(bytes(8), 0) == bytes(8)
    with pytest.raises(CryptoError):
        pad(bytes(9), 0)
    with pytest.raises(CryptoError):
        pad(bytes(8), 3)


def test_cup_ecb_mac_is_ascii_hex() -> None:
    """The UnionPay MAC is 8 upper-case hex ASCII characters and depends on the data."""
    mak = bytes.fromhex("5CBE7E38A146FD5C")
    a, b = cup_ecb_mac(mak, b"abc"), cup_ecb_mac(mak, b"abd")
    assert len(a) == 8 and a.decode().upper() == a.decode() and a != b
    int(a, 16)


tracks = st.text("0123456789", min_size=18, max_size=104)


@given(odd_key(16), tracks, st.integers(min_value=0, max_value=17))
def test_track_round_trip(tdk: bytes, digits: str, sep_at: int) -> None:
    """decrypt_track inverts encrypt_track; length, prefix and last byte are preserved."""
    track = digits[:sep_at] + "=" + digits[sep_at:]
    expected = track.replace("=", "D")
    enc = encrypt_track(tdk, track)
    assert len(enc) == len(track)
    assert decrypt_track(tdk, enc) == expected
    keep = len(expected) - (2 if len(expected) % 2 == 0 else 1)
    assert enc[keep:] == expected[keep:]


def test_short_track_is_rejected() -> None:
    """Tracks under 18 digits cannot be encrypted."""
    with pytest.raises(CryptoError):
        encrypt_track(bytes(16), "1" * 17)


TMK = bytes.fromhex("11111111111111112222222222222222")
PIK16 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
MAK = bytes.fromhex("5CBE7E38A146FD5C")


@pytest.mark.parametrize(
    ("net_code", "pik", "tdk", "length"),
    [("001", PIK16[:8], None, 24), ("003", PIK16, None, 40), ("004", PIK16, PIK16[::-1], 60)],
)
def test_f62_wrap_unwrap_each_layout(
    net_code: str, pik: bytes, tdk: bytes | None, length: int
) -> None:
    """Each sign-in layout has its length, a zero-filled MAK slot and round-trips."""
    keys = ClearWorkingKeys(pik, MAK, tdk)
    f62 = wrap_f62(net_code, keys, TMK)
    assert len(f62) == length
    if net_code != "001":
        assert f62[28:36] == bytes(8)
    parsed = parse_f62(net_code, f62)
    assert parsed.mak_cv == check_value(MAK, 4)
    assert build_f62(net_code, parsed) == f62
    assert unwrap_f62(net_code, f62, TMK) == keys


def test_f62_cv_mismatch_raises() -> None:
    """A tampered check value fails the unwrap with CheckValueMismatch."""
    f62 = bytearray(wrap_f62("003", ClearWorkingKeys(PIK16, MAK, None), TMK))
    f62[39] ^= 1
    with pytest.raises(CheckValueMismatch):
        unwrap_f62("003", bytes(f62), TMK)


def test_f62_bad_length_and_code() -> None:
    """Wrong lengths and unknown 60.3 codes raise codec errors naming field 62."""
    with pytest.raises(DecodeError) as exc:
        parse_f62("003", bytes(24))
    assert exc.value.field == 62
    with pytest.raises(DecodeError):
        parse_f62("009", bytes(24))
    with pytest.raises(EncodeError):
        build_f62("004", EncryptedWorkingKeys(bytes(16), bytes(4), bytes(8), bytes(4)))
