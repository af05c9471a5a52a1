"""Key ceremony commands (A2, A4, K0), NC/B2, error codes, framing and robustness."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm_sim.commands import COMMANDS
from hsm_sim.engine import HsmEngine
from hsm_sim.lmk import LmkSet
from posp.crypto.des import adjust_odd_parity, check_value
from posp.errors import ConfigError
from tests.hsm_engine.conftest import Hsm, lmk_encrypt

h = bytes.fromhex
KEY16 = "5B012F0E75970D5DB96EE65249F1D949"


def test_a2_components_formed_by_a4(hsm: Hsm) -> None:
    """A2 returns a component under the LMK and in clear; A4 XORs two into the key."""
    fields1, fields2 = hsm.ok("A2000U"), hsm.ok("A2000U")
    under1, clear1 = fields1[:33], h(fields1[33:])
    under2, clear2 = fields2[:33], h(fields2[33:])
    assert len(clear1) == 16 and clear1 != clear2
    expected = adjust_odd_parity(bytes(a ^ b for a, b in zip(clear1, clear2, strict=True)))
    formed = hsm.ok(f"A42000U{under1}{under2}")
    assert formed[33:] == check_value(expected).hex().upper()
    assert hsm.call(f"A41000U{under1}")[0] == "03"


def test_k0_forms_key_from_clear_components(hsm: Hsm) -> None:
    """K0 XORs clear components; the KCV is that of the parity-adjusted XOR."""
    a, b = "1" * 32, KEY16
    xor = bytes(x ^ y for x, y in zip(h(a), h(b), strict=True))
    fields = hsm.ok(f"K0002U2{a}{b}")
    assert fields[33:] == check_value(adjust_odd_parity(xor)).hex().upper()
    assert hsm.ok(f"K0002U1{KEY16}")[33:] == check_value(h(KEY16)).hex().upper()
    assert hsm.call("K0002U0")[0] == "03"
    assert hsm.call(f"K0002U1{KEY16[:20]}")[0] == "15"


def test_nc_and_b2(hsm: Hsm) -> None:
    """NC returns the LMK check value and firmware; B2 echoes its data."""
    assert hsm.ok("NC") == LmkSet.test_set().check_value() + "0007-E000"
    assert hsm.ok("B20004PING") == "PING"
    assert hsm.call("B20009PING")[0] == "15"


def test_unknown_command_answers_68_with_incremented_code(hsm: Hsm) -> None:
    """An unknown command answers its incremented code and 68, trailer echoed."""
    assert hsm.raw("XA1234") == b"0001XB68"
    assert hsm.raw(b"QQ\x19TR") == b"0001QR68\x19TR"


def test_header_and_trailer_are_echoed(hsm: Hsm) -> None:
    """The header comes back unchanged and 0x19 + trailer is echoed on success and error."""
    engine = HsmEngine(header_length=6)
    assert engine.handle(b"HDR123NC\x19TRAILER").startswith(b"HDR123ND00")
    assert engine.handle(b"HDR123NC\x19TRAILER").endswith(b"\x19TRAILER")
    assert engine.handle(b"HDR123A0X\x19T") == b"HDR123A115\x19T"


def test_short_request_gets_no_response() -> None:
    """Fewer bytes than header + command code: empty response."""
    assert HsmEngine().handle(b"0001N") == b""


def test_leftover_characters_are_15(hsm: Hsm) -> None:
    """Characters after the last field (other than a trailer) answer 15."""
    assert hsm.call("NCX")[0] == "15"
    assert hsm.call("A00002UZZ")[0] == "15"


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("A00ZZ2U", "04"),  # key type not parsable
        ("A00002Q", "26"),  # bad LMK scheme
        ("A00002", "15"),  # missing scheme
        ("A02002U", "15"),  # bad mode
    ],
)
def test_a0_field_errors(hsm: Hsm, command: str, code: str) -> None:
    """A0 answers 04 / 26 / 15 for bad type, scheme and mode."""
    assert hsm.call(command)[0] == code


def test_parity_errors_10_and_11(hsm: Hsm) -> None:
    """A TPK with even parity under the LMK is 10 in CA; a bad ZPK is 11."""
    even = lmk_encrypt("002", h("5A" + KEY16[2:]), "U")
    good_tpk = hsm.import_clear("002", KEY16)
    good_zpk = hsm.import_clear("001", KEY16)
    bad_zpk = lmk_encrypt("001", h("5A" + KEY16[2:]), "U")
    tail = f"12{'0' * 16}0101{'0' * 12}"
    assert hsm.call(f"CA{even}{good_zpk}{tail}")[0] == "10"
    assert hsm.call(f"CA{good_tpk}{bad_zpk}{tail}")[0] == "11"
    assert hsm.call(f"BUFF1{even};002;001")[0] == "10"


def test_key_type_variant_matters(hsm: Hsm) -> None:
    """A ZPK (001) presented as a TPK (002) decrypts to garbage: parity error or other KCV."""
    zpk = hsm.import_clear("001", KEY16)
    code, fields = hsm.call(f"BUFF1{zpk};002;001")
    assert code == "10" or fields != check_value(h(KEY16)).hex().upper()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """handle() answers any byte string without raising."""
    reply = ENGINE.handle(data)
    assert isinstance(reply, bytes)
    if len(data) >= 6:
        assert reply[:4] == data[:4]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(COMMANDS)), st.binary(max_size=100), st.text(max_size=60))
def test_known_commands_with_junk_never_raise(command: bytes, junk: bytes, text: str) -> None:
    """Every known command with junk fields answers with its response code and 2 digits."""
    for tail in (junk, text.encode("utf-8", "replace"), b"U" + text.encode("ascii", "ignore")):
        reply = ENGINE.handle(b"0001" + command + tail)
        assert reply[4:6] == COMMANDS[command][1]
        assert reply[6:8].isdigit()


ENGINE = HsmEngine()


def write_lmk_file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _test_lines() -> list[str]:
    pairs = LmkSet.test_set().pairs
    return [f"{2 * i:02d}-{2 * i + 1:02d} {p[:8].hex()} {p[8:].hex()}" for i, p in enumerate(pairs)]


def test_lmk_load_round_trips_test_set(tmp_path: Path) -> None:
    """An LMK file with the test set (plus comments) loads to the same set."""
    path = write_lmk_file(tmp_path / "lmk.txt", ["# test LMK", "", *_test_lines()])
    assert LmkSet.load(path) == LmkSet.test_set()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ls: ls[:19], "19 pairs"),
        (lambda ls: [ls[1], ls[0], *ls[2:]], "line 1"),
        (lambda ls: [ls[0].replace("0101010101010101", "0000000000000000", 1), *ls[1:]], "parity"),
        (lambda ls: [ls[0][:-1] + "Z", *ls[1:]], "hex"),
    ],
)
def test_lmk_load_rejects_bad_files(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    """Wrong count, order, parity or characters raise ConfigError naming the problem."""
    path = write_lmk_file(tmp_path / "lmk.txt", mutate(_test_lines()))
    with pytest.raises(ConfigError, match=message):
        LmkSet.load(path)


def test_lmk_repr_hides_keys() -> None:
    """The LMK set's repr shows only a check value."""
    assert "0101" not in repr(LmkSet.test_set())
