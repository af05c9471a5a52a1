"""Fixtures for the HSM engine tests: an engine on the test LMK and key helpers."""

from __future__ import annotations

import os
from itertools import count

import pytest

from hsm_sim.engine import HsmEngine
from hsm_sim.keyscheme import KekSource, encrypt_key, key_type, lmk_variant_key
from hsm_sim.lmk import LmkSet
from posp.crypto.emv import CardKeys

H = "0001"


def lmk_encrypt(type_code: str, clear: bytes, tag: str) -> str:
    """Encrypt a clear key under the test LMK without going through the engine."""
    kt = key_type(type_code)
    pair = LmkSet.test_set().pairs[kt.pair]
    return encrypt_key(KekSource(lmk_variant_key(pair, kt.variant, 0)), clear, tag)


def arqc_with_0x19(keys: CardKeys, data: bytes) -> tuple[bytes, bytes, bytes]:
    """(data + a counter, ARQC, ARPC for ARC 1919) with 0x19 in the ARQC and the ARPC:
    the counter is raised until both hold one (a few hundred tries at most)."""
    for n in count():
        counted = data + n.to_bytes(3, "big")
        arqc = keys.cryptogram(counted)
        arpc = keys.arpc(arqc, b"\x19\x19")
        if 0x19 in arqc and 0x19 in arpc:
            return counted, arqc, arpc
    raise AssertionError("unreachable")


class Hsm:
    """Thin test driver: sends ``command`` with header 0001 and splits the reply."""

    def __init__(self, engine: HsmEngine) -> None:
        self.engine = engine

    def raw(self, command: str | bytes) -> bytes:
        body = command.encode() if isinstance(command, str) else command
        return self.engine.handle(H.encode() + body)

    def call(self, command: str | bytes) -> tuple[str, str]:
        """(error code, fields) of the reply; asserts header and response code."""
        reply = self.raw(command)
        cmd = command[:2] if isinstance(command, str) else command[:2].decode()
        assert reply[:4] == b"0001"
        assert reply[4:6].decode() == cmd[0] + chr(ord(cmd[1]) + 1)
        return reply[6:8].decode(), reply[8:].decode("latin-1")

    def ok(self, command: str | bytes) -> str:
        code, fields = self.call(command)
        assert code == "00", f"expected 00, got {code}"
        return fields

    def import_clear(self, type_code: str, clear_hex: str) -> str:
        """A clear key → its LMK form via K0 (one component)."""
        scheme = {16: "Z", 32: "U", 48: "T"}[len(clear_hex)]
        fields = self.ok(f"K0{type_code}{scheme}1{clear_hex}")
        return fields[:-6]


@pytest.fixture
def fixed_keys() -> list[bytes]:
    """Keys the engine's key source hands out, in order (extend in the test)."""
    return []


@pytest.fixture
def hsm(fixed_keys: list[bytes]) -> Hsm:
    def source(n: int) -> bytes:
        if fixed_keys:
            key = fixed_keys.pop(0)
            assert len(key) == n
            return key
        return os.urandom(n)

    return Hsm(HsmEngine(key_source=source))
