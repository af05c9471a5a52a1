"""posp.crypto.emv: the spec's emv vectors, and pyemv as an oracle over random cards."""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import ac as pyemv_ac
from pyemv import kd as pyemv_kd
from pyemv import tools as pyemv_tools

from posp.crypto import des, emv, nativedes
from posp.crypto.emv import (
    CardKeys,
    Scheme,
    ac_data,
    application_cryptogram,
    cryptogram_version,
    cvr_of_iad,
    derive_udk,
    pan_psn_block,
    script_mac,
    script_session_key,
    session_key,
)
from posp.errors import CryptoError

h = bytes.fromhex
# pyemv still builds 8/16-byte TripleDES keys; its deprecation noise is not ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES.*")


def _pboc_case(vectors: dict[str, Any]) -> dict[str, Any]:
    case: dict[str, Any] = vectors["emv"]["pboc_cvn01"][0]
    return case


def test_pboc_v01_vector_keys(vectors: dict[str, Any]) -> None:
    """UDK (option A) and the version-01 session key reproduce every emv vector."""
    for v in vectors["emv"]["pboc_cvn01"]:
        block = pan_psn_block(v["pan"], v["psn"])
        keys = CardKeys.derive(h(v["imk_ac"]), block, Scheme.PBOC_V01, h(v["atc"]))
        assert keys.udk.hex().upper() == v["udk"]
        assert keys.sk.hex().upper() == v["session_key"]


def test_pboc_v01_vector_ac_data_arqc_and_both_arpcs(vectors: dict[str, Any]) -> None:
    """AC data from the tags, the ARQC over it, and the ARPC for each ARC match the vectors."""
    for v in vectors["emv"]["pboc_cvn01"]:
        tags = {tag: h(value) for tag, value in v["tags"].items()}
        data = ac_data(tags)
        assert cvr_of_iad(tags["9F10"]).hex().upper() == v["cvr"]
        assert cryptogram_version(tags["9F10"]) == 1
        assert data.hex().upper() == v["ac_data"]
        keys = CardKeys.derive(
            h(v["imk_ac"]), pan_psn_block(v["pan"], v["psn"]), Scheme.PBOC_V01, h(v["atc"])
        )
        arqc = keys.cryptogram(data)
        assert arqc.hex().upper() == v["arqc"]
        assert application_cryptogram(keys.sk, data) == arqc
        assert keys.verify(data, arqc)
        for answer in v["arpc"]:
            assert answer["arc"].encode().hex().upper() == answer["arc_hex"]
            assert keys.arpc(arqc, h(answer["arc_hex"])).hex().upper() == answer["arpc"]


def test_a_changed_data_byte_or_arqc_does_not_verify(vectors: dict[str, Any]) -> None:
    """verify is False for an ARQC over other data and for a flipped ARQC bit."""
    v = _pboc_case(vectors)
    keys = CardKeys.derive(
        h(v["imk_ac"]), pan_psn_block(v["pan"], v["psn"]), Scheme.PBOC_V01, h(v["atc"])
    )
    data = h(v["ac_data"])
    assert not keys.verify(data[:-1] + b"\x00", h(v["arqc"]))
    assert not keys.verify(data, bytes([h(v["arqc"])[0] ^ 1]) + h(v["arqc"])[1:])


def test_pan_psn_block_keeps_the_rightmost_16_digits_zero_filled() -> None:
    """Short PANs are zero-filled on the left, long ones keep their rightmost 16 digits."""
    assert pan_psn_block("6228000100001", "01") == h("0622800010000101")
    assert pan_psn_block("6225880123456789012", "00") == h("8012345678901200")


@pytest.mark.parametrize(
    ("pan", "psn"), [("", "00"), ("12345a", "00"), ("1" * 20, "00"), ("123456", "1"), ("1", "0x")]
)
def test_bad_pan_or_psn_is_a_crypto_error(pan: str, psn: str) -> None:
    """A PAN that is not 1-19 digits or a PSN that is not 2 digits raises CryptoError."""
    with pytest.raises(CryptoError):
        pan_psn_block(pan, psn)


def test_wrong_lengths_raise_crypto_error_without_values() -> None:
    """Key, ATC and UN of the wrong length raise CryptoError naming the argument only."""
    with pytest.raises(CryptoError, match="IMK"):
        derive_udk(bytes(8), bytes(8))
    udk = bytes(16)
    with pytest.raises(CryptoError, match="ATC"):
        session_key(udk, Scheme.EMV_COMMON, b"\x00")
    with pytest.raises(CryptoError, match="unpredictable"):
        session_key(udk, Scheme.MASTERCARD_SKD, b"\x00\x01", b"\x00")
    partial = {tag: b"" for tag in ("9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C")}
    with pytest.raises(CryptoError, match="9F37"):
        ac_data(partial)


# --- pyemv as an oracle ------------------------------------------------------


def _oracle(scheme: Scheme, imk: bytes, pan: str, psn: str, atc: bytes, un: bytes) -> bytes:
    """The session key pyemv's primitives give for ``scheme`` (PBOC v01 built from them)."""
    udk = pyemv_kd.derive_icc_mk_a(imk, pan, psn)
    if scheme is Scheme.EMV_COMMON:
        return pyemv_kd.derive_common_sk(udk, atc + bytes(6))
    if scheme is Scheme.MASTERCARD_SKD:
        return pyemv_kd.derive_common_sk(udk, atc + b"\x00\x00" + un)
    not_atc = pyemv_tools.xor(atc, b"\xff\xff")
    return pyemv_tools.encrypt_tdes_ecb(udk, bytes(6) + atc + bytes(6) + not_atc)


def _mismatches(scheme: Scheme, count: int, seed: int) -> int:
    rng = random.Random(seed)
    bad = 0
    for _ in range(count):
        imk = rng.randbytes(16)
        pan = str(rng.randrange(10**12, 10**19))
        psn = f"{rng.randrange(100):02d}"
        atc, un = rng.randbytes(2), rng.randbytes(4)
        data = rng.randbytes(rng.randrange(1, 64))
        arc = rng.randbytes(2)
        keys = CardKeys.derive(imk, pan_psn_block(pan, psn), scheme, atc, un)
        sk = _oracle(scheme, imk, pan, psn, atc, un)
        arqc = pyemv_ac.generate_ac(sk, data)
        arpc_key = (
            pyemv_kd.derive_icc_mk_a(imk, pan, psn) if scheme is Scheme.MASTERCARD_SKD else sk
        )
        arpc = pyemv_ac.generate_arpc_1(arpc_key, arqc, arc)
        same = keys.udk == pyemv_kd.derive_icc_mk_a(imk, pan, psn) and _same_des_key(keys.sk, sk)
        if not (same and keys.cryptogram(data) == arqc and keys.arpc(arqc, arc) == arpc):
            bad += 1
    return bad


def _same_des_key(a: bytes, b: bytes) -> bool:
    """Equal up to parity bits (DES ignores them; pyemv adjusts parity, version 01 does not)."""
    return bytes(x & 0xFE for x in a) == bytes(y & 0xFE for y in b)


@pytest.mark.parametrize("scheme", list(Scheme))
def test_no_mismatch_against_pyemv_over_1000_random_cards(scheme: Scheme) -> None:
    """1,000 random IMKs x PANs x ATCs x UNs x data: same UDK, SK, ARQC and ARPC as pyemv."""
    assert _mismatches(scheme, 1000, seed=16 + scheme) == 0


@pytest.mark.slow
@pytest.mark.parametrize("scheme", list(Scheme))
def test_no_mismatch_against_pyemv_over_10000_random_cards(scheme: Scheme) -> None:
    """The issue's 10,000-card run per scheme: 0 mismatches against pyemv."""
    assert _mismatches(scheme, 10_000, seed=1600 + scheme) == 0


def test_script_mac_matches_pyemv_secure_messaging() -> None:
    """script_mac = pyemv's command MAC (4 bytes) under the common SK with R = ARQC."""
    from pyemv import sm as pyemv_sm

    rng = random.Random(71)
    for _ in range(200):
        udk_smi, arqc, atc = rng.randbytes(16), rng.randbytes(8), rng.randbytes(2)
        header, data = bytes.fromhex("8424000004"), rng.randbytes(rng.randrange(0, 20))
        sk = script_session_key(udk_smi, arqc)
        expected_sk = pyemv_kd.derive_common_sk(udk_smi, arqc)
        expected = pyemv_sm.generate_command_mac(expected_sk, header + atc + arqc + data, 4)
        assert script_mac(sk, header, atc, arqc, data) == expected


def test_script_mac_needs_a_5_byte_header() -> None:
    """A header other than CLA INS P1 P2 Lc raises CryptoError."""
    with pytest.raises(CryptoError, match="header"):
        script_mac(bytes(16), b"\x84\x24", bytes(2), bytes(8), b"")


def test_session_keys_stay_out_of_the_shared_des_cache() -> None:
    """100 transactions of one card add the IMK and the UDK to posp.crypto.des's context
    caches, not 100 session keys (they would evict the hot MAC and PIN keys)."""
    imk, block = bytes(range(16)), pan_psn_block("6225880000000001", "01")
    des._ecb_contexts.clear()
    des._cbc_contexts.clear()
    for atc in range(100):
        keys = CardKeys.derive(imk, block, Scheme.PBOC_V01, atc.to_bytes(2, "big"))
        keys.arpc(keys.cryptogram(bytes(37)), b"00")
    assert len(des._ecb_contexts) <= 2 and not des._cbc_contexts


def test_one_session_key_makes_every_mac_as_if_it_were_its_first() -> None:
    """A card's session key serves the ARQC and then the TC or AAC: its kept CBC chain
    starts each MAC afresh, so every MAC equals pyemv's, whatever lengths came before."""
    rng = random.Random(55)
    for _ in range(200):
        sk = rng.randbytes(16)
        keys = CardKeys(Scheme.PBOC_V01, rng.randbytes(16), sk)
        for _ in range(rng.randrange(1, 6)):
            data = rng.randbytes(rng.randrange(0, 80))
            assert keys.cryptogram(data) == pyemv_ac.generate_ac(sk, data)
            assert keys.verify(data, pyemv_ac.generate_ac(sk, data))


# --- the session cipher through libcrypto's DES ------------------------------------

needs_native = pytest.mark.skipif(nativedes.load() is None, reason="no libcrypto DES")


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    sk=st.binary(min_size=16, max_size=16),
    messages=st.lists(st.binary(max_size=200), min_size=1, max_size=4),
    block=st.binary(min_size=8, max_size=8),
)
def test_native_session_cipher_equals_the_cryptography_contexts(
    sk: bytes, messages: list[bytes], block: bytes
) -> None:
    """libcrypto's schedules give the MACs and 3DES blocks of cryptography's contexts,
    for any key, any data and any number of MACs under one key."""
    des = nativedes.load()
    assert des is not None
    native, context = emv.NativeSessionCipher(sk, des), emv.ContextSessionCipher(sk)
    for data in messages:
        assert native.mac(data) == context.mac(data)
    assert native.encrypt_block(block) == context.encrypt_block(block)


@needs_native
def test_native_des_refuses_bad_lengths() -> None:
    """Keys, blocks and CBC lengths of the wrong size raise (ValueError / CryptoError)."""
    des = nativedes.load()
    assert des is not None and emv.NATIVE
    with pytest.raises(ValueError):
        des.schedule(bytes(7))
    ks = des.schedule(bytes(8))
    with pytest.raises(ValueError):
        des.cbc_last(ks, bytes(12), 12)
    with pytest.raises(ValueError):
        des.ede(ks, ks, bytes(9))
    with pytest.raises(CryptoError):
        emv.NativeSessionCipher(bytes(8), des)
    with pytest.raises(CryptoError):
        emv.NativeSessionCipher(bytes(16), des).encrypt_block(bytes(4))


def test_without_libcrypto_des_session_keys_use_cryptography(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No libcrypto DES (off Linux, or a libcrypto without it): no native ciphers, and
    the contexts still give pyemv's cryptograms."""
    monkeypatch.setattr(sys, "platform", "darwin")
    assert nativedes.load() is None
    assert emv._native_session_ciphers() is None
    sk = bytes(range(16))
    data = bytes(range(37))
    assert emv.ContextSessionCipher(sk).mac(data) == pyemv_ac.generate_ac(sk, data)
