"""DES/3DES primitives: key expansion, parity, check values, CBC, cross-checked with psec."""

from __future__ import annotations

import warnings

import psec.des
import pytest
from hypothesis import given
from hypothesis import strategies as st

from posp.crypto import nativedes
from posp.crypto.des import (
    adjust_odd_parity,
    check_value,
    generate_key,
    has_odd_parity,
    tdes_decrypt_cbc,
    tdes_decrypt_ecb,
    tdes_encrypt_cbc,
    tdes_encrypt_ecb,
)
from posp.errors import CryptoError

# psec itself uses the deprecated TripleDES import and short keys.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

keys = st.sampled_from([8, 16, 24]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n).map(adjust_odd_parity)
)
blocks = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: st.binary(min_size=8 * n, max_size=8 * n)
)


@given(keys, blocks)
def test_ecb_round_trip_and_matches_psec(key: bytes, data: bytes) -> None:
    """ECB decrypt inverts encrypt, and encryption equals psec's TDES ECB."""
    enc = tdes_encrypt_ecb(key, data)
    assert tdes_decrypt_ecb(key, enc) == data
    assert enc == psec.des.encrypt_tdes_ecb(key, data)


@given(keys, blocks, st.binary(min_size=8, max_size=8))
def test_cbc_round_trip_and_matches_psec(key: bytes, data: bytes, iv: bytes) -> None:
    """CBC over cached ECB contexts equals psec's TDES CBC and round-trips."""
    enc = tdes_encrypt_cbc(key, data, iv)
    assert enc == psec.des.encrypt_tdes_cbc(key, iv, data)
    assert tdes_decrypt_cbc(key, enc, iv) == data


@given(st.lists(st.tuples(st.integers(1, 60), st.binary(min_size=8, max_size=8)), max_size=6))
def test_cbc_context_reused_across_calls_keeps_each_call_independent(
    calls: list[tuple[int, bytes]],
) -> None:
    """Back-to-back CBC calls under one key (the cached context's chaining carried
    over) each equal a fresh psec CBC, long network-MAB-sized data included."""
    key = bytes(range(1, 17))
    for n_blocks, iv in calls:
        data = bytes(i % 251 for i in range(8 * n_blocks))
        assert tdes_encrypt_cbc(key, data, iv) == psec.des.encrypt_tdes_cbc(key, iv, data)


def test_cbc_refuses_an_iv_that_is_not_one_block() -> None:
    """A CBC IV of the wrong size is a CryptoError, whatever the data length."""
    with pytest.raises(CryptoError, match="IV"):
        tdes_encrypt_cbc(bytes(16), bytes(8), bytes(7))


@given(keys)
def test_check_value_matches_psec(key: bytes) -> None:
    """check_value(key, n) equals psec's generate_kcv for 3 and 8 bytes."""
    assert check_value(key) == psec.des.generate_kcv(key, 3)
    assert check_value(key, 8) == psec.des.generate_kcv(key, 8)


@given(st.binary(min_size=1, max_size=24))
def test_adjust_parity_gives_odd_parity_like_psec(raw: bytes) -> None:
    """adjust_odd_parity yields odd parity on every byte and agrees with psec."""
    adjusted = adjust_odd_parity(raw)
    assert has_odd_parity(adjusted)
    assert all(bin(b).count("1") % 2 == 1 for b in adjusted)
    if len(raw) in (8, 16, 24):
        assert adjusted == psec.des.adjust_key_parity(raw)


def test_has_odd_parity_detects_one_bad_byte() -> None:
    """A single even-parity byte makes the key fail the parity check."""
    key = bytes.fromhex("0123456789ABCDEF")
    assert has_odd_parity(key)
    assert not has_odd_parity(key[:7] + b"\xee")


@pytest.mark.parametrize("length", [8, 16, 24])
def test_generate_key_has_length_and_parity(length: int) -> None:
    """generate_key returns distinct odd-parity keys of the requested length."""
    a, b = generate_key(length), generate_key(length)
    assert len(a) == length and has_odd_parity(a) and a != b


def test_bad_lengths_raise_crypto_error() -> None:
    """Wrong key or data lengths raise CryptoError, not a library error."""
    with pytest.raises(CryptoError):
        tdes_encrypt_ecb(bytes(7), bytes(8))
    with pytest.raises(CryptoError):
        tdes_encrypt_ecb(bytes(16), bytes(7))
    with pytest.raises(CryptoError):
        generate_key(12)


def test_no_deprecation_warning_for_short_keys() -> None:
    """8- and 16-byte keys are expanded to 24 bytes, so cryptography does not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tdes_encrypt_ecb(bytes.fromhex("1313131313131313"), bytes(8))
        tdes_encrypt_ecb(bytes.fromhex("13131313131313131515151515151515"), bytes(8))


@given(keys)
def test_check_value_of_a_key_without_a_context_leaves_none(key: bytes) -> None:
    """A key seen first by check_value goes through libcrypto once (when it loads)
    and gets no cached context; the value equals the context's, computed after."""
    from posp.crypto import des

    des._ecb_contexts.pop(key, None)
    first = check_value(key, 8)
    if des._encrypt_once is not None:
        assert key not in des._ecb_contexts
    assert tdes_encrypt_ecb(key, bytes(8)) == first  # makes the context
    assert key in des._ecb_contexts
    assert check_value(key, 8) == first  # through the context now


needs_native = pytest.mark.skipif(nativedes.load() is None, reason="no libcrypto DES")


@needs_native
def test_libcrypto_one_block_path_is_in_use() -> None:
    """Where libcrypto's DES loads, the import-time self-test accepted it: a broken
    ``encrypt_once`` would silently fall back to contexts, and this would fail."""
    from posp.crypto import des

    assert des._encrypt_once is not None


@needs_native
@given(keys, st.binary(min_size=8, max_size=8))
def test_native_encrypt_once_matches_cryptography(key: bytes, block: bytes) -> None:
    """``NativeDes.encrypt_once`` is 3DES-EDE under K1 K2 K3 for 8-, 16- and
    24-byte keys (expanded to 24), as psec computes it."""
    from posp.crypto import des

    native = nativedes.load()
    assert native is not None
    assert native.encrypt_once(des.expand_key(key), block) == psec.des.encrypt_tdes_ecb(key, block)


def test_check_value_without_libcrypto_uses_a_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where libcrypto's DES did not load, check values come from cipher contexts."""
    from posp.crypto import des

    monkeypatch.setattr(des, "_encrypt_once", None)
    key = adjust_odd_parity(bytes(range(16)))
    des._ecb_contexts.pop(key, None)
    assert check_value(key, 8) == psec.des.generate_kcv(key, 8)
    assert key in des._ecb_contexts


def test_native_once_refuses_a_library_that_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """The self-test at import: a libcrypto whose answer differs is not used."""
    from posp.crypto import des

    class Wrong:
        def encrypt_once(self, key24: bytes, block: bytes) -> bytes:
            return bytes(8)

    monkeypatch.setattr(nativedes, "load", lambda: Wrong())
    assert des._native_once() is None
    monkeypatch.setattr(nativedes, "load", lambda: None)
    assert des._native_once() is None


def test_check_value_bad_key_length_is_a_crypto_error() -> None:
    """The one-block path checks the key length like the context path."""
    with pytest.raises(CryptoError):
        check_value(bytes(15))
