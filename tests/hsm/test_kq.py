"""posp.hsm.kq against the hsm_sim engine in-process, and KQ over the simulator's TCP server."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm_sim.engine import HsmEngine
from hsm_sim.server import HsmServer, start_hsm_server
from posp.crypto.des import adjust_odd_parity
from posp.crypto.emv import CardKeys, Scheme
from posp.errors import HsmCommandError, HsmError, HsmParityError
from posp.hsm.kq import KqMode, KqRequest, KqResult, build_kq, pan_psn, parse_kq
from tests.hsm_engine.conftest import arqc_with_0x19, lmk_encrypt

HEADER = b"0042"


def call(engine: HsmEngine, request: KqRequest) -> KqResult:
    reply = engine.handle(HEADER + build_kq(request))
    assert reply[:4] == HEADER
    return parse_kq(reply[4:], request.mode)


def _request(rng: random.Random, scheme: Scheme, mode: KqMode) -> tuple[KqRequest, CardKeys]:
    imk = adjust_odd_parity(rng.randbytes(16))
    block = pan_psn(str(rng.randrange(10**15, 10**19)), f"{rng.randrange(100):02d}")
    atc, un = rng.randbytes(2), rng.randbytes(4)
    data = rng.randbytes(rng.randrange(1, 80))
    keys = CardKeys.derive(imk, block, scheme, atc, un)
    mk_ac = lmk_encrypt("109", imk, "U")
    arc = rng.choice([b"00", b"01", b"05", b"51"])
    arqc = keys.cryptogram(data)
    return KqRequest(mode, scheme, mk_ac, block, atc, un, data, arqc, arc), keys


@pytest.mark.parametrize("scheme", list(Scheme))
def test_verify_and_arpc_over_200_random_cards_per_scheme(scheme: Scheme) -> None:
    """build_kq → engine → parse_kq: every genuine ARQC verifies with the card's ARPC."""
    engine, rng = HsmEngine(), random.Random(int(scheme))
    for _ in range(200):
        request, keys = _request(rng, scheme, KqMode.VERIFY_AND_ARPC)
        assert call(engine, request) == KqResult(True, keys.arpc(request.arqc, request.arc))


def test_modes_verify_only_and_arpc_only() -> None:
    """Mode 0 returns no ARPC; mode 2 returns the ARPC of whatever ARQC it is given."""
    engine, rng = HsmEngine(), random.Random(7)
    request, keys = _request(rng, Scheme.PBOC_V01, KqMode.VERIFY)
    assert call(engine, request) == KqResult(True, None)
    forged = KqRequest(**{**_fields(request), "mode": KqMode.ARPC_ONLY, "arqc": bytes(8)})
    assert call(engine, forged) == KqResult(True, keys.arpc(bytes(8), request.arc))


def _fields(request: KqRequest) -> dict[str, object]:
    return {name: getattr(request, name) for name in KqRequest.__slots__}


def test_a_bad_arqc_is_an_answer_not_an_exception() -> None:
    """Error 01 parses as verified=False with no ARPC."""
    engine = HsmEngine()
    request, _ = _request(random.Random(3), Scheme.EMV_COMMON, KqMode.VERIFY_AND_ARPC)
    bad = KqRequest(**{**_fields(request), "arqc": bytes(8)})
    assert call(engine, bad) == KqResult(False, None)


def test_other_error_codes_raise_typed_exceptions() -> None:
    """Parity (10) raises HsmParityError; a bad scheme answer raises HsmCommandError 05."""
    engine = HsmEngine()
    request, _ = _request(random.Random(4), Scheme.EMV_COMMON, KqMode.VERIFY)
    parity = KqRequest(**{**_fields(request), "mk_ac": lmk_encrypt("109", bytes(16), "U")})
    with pytest.raises(HsmParityError):
        call(engine, parity)
    with pytest.raises(HsmCommandError) as caught:
        parse_kq(b"KR05", KqMode.VERIFY)
    assert caught.value.error_code == "05"


@pytest.mark.parametrize("reply", [b"", b"KR", b"KS00", b"KR00\x01\x02"])
def test_malformed_replies_raise_hsm_error(reply: bytes) -> None:
    """A reply that is not KR, too short, or lacks its 8-byte ARPC raises HsmError."""
    with pytest.raises(HsmError):
        parse_kq(reply, KqMode.VERIFY_AND_ARPC)


def test_a_trailer_after_the_arpc_is_ignored() -> None:
    """KR00 + ARPC + 0x19 + trailer: the ARPC is the 8 bytes after the error code."""
    assert parse_kq(b"KR00" + b"\x19" * 8 + b"\x19T", KqMode.ARPC_ONLY).arpc == b"\x19" * 8


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"mk_ac": "U0123"}, "mk_ac"),
        ({"pan_psn": bytes(7)}, "pan_psn"),
        ({"atc": bytes(3)}, "atc"),
        ({"un": bytes(2)}, "un"),
        ({"arqc": bytes(4)}, "arqc"),
        ({"arc": b"0"}, "arc"),
        ({"data": bytes(256)}, "data"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(change: dict[str, object], name: str) -> None:
    """build_kq refuses a field of the wrong size with ValueError naming the argument."""
    request, _ = _request(random.Random(5), Scheme.PBOC_V01, KqMode.VERIFY)
    with pytest.raises(ValueError, match=name):
        build_kq(KqRequest(**{**_fields(request), **change}))


def test_pan_psn_rejects_bad_input_with_value_error() -> None:
    """pan_psn: non-digits or a 1-digit PSN raise ValueError; a short PAN is zero-filled."""
    assert pan_psn("6228000100001", "01") == bytes.fromhex("0622800010000101")
    with pytest.raises(ValueError):
        pan_psn("62280001000A1", "01")
    with pytest.raises(ValueError):
        pan_psn("6228000100001", "1")


@given(st.binary(max_size=40))
def test_parse_kq_of_any_bytes_raises_only_hsm_errors(reply: bytes) -> None:
    """parse_kq answers a KqResult or raises HsmError for any reply bytes."""
    for mode in KqMode:
        try:
            parse_kq(reply, mode)
        except HsmError:
            pass


# --- over TCP ----------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[HsmServer]:
    hsm = await start_hsm_server(host="127.0.0.1", port=0, metrics_port=0)
    yield hsm
    await hsm.close()


async def _exchange(port: int, frames: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(struct.pack(">H", len(f)) + f for f in frames))
    replies = []
    for _ in frames:
        (size,) = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 5.0))
        replies.append(await asyncio.wait_for(reader.readexactly(size), 5.0))
    writer.close()
    await writer.wait_closed()
    return replies


async def test_kq_with_0x19_in_every_binary_field_over_tcp(server: HsmServer) -> None:
    """Over the TCP server: 0x19-laden KQ requests (with and without a trailer) verify,
    a bad ARQC answers 01, and pipelined replies keep their headers."""
    imk = adjust_odd_parity(bytes(range(16)))
    block = pan_psn("6219191919191919", "19")
    atc, un, arc = b"\x19\x19", b"\x19\x00\x19\x00", b"\x19\x19"
    keys = CardKeys.derive(imk, block, Scheme.PBOC_V01, atc, un)
    data, arqc, arpc = arqc_with_0x19(keys, b"\x19data\x19")
    mk_ac = lmk_encrypt("109", imk, "U")
    fields = (Scheme.PBOC_V01, mk_ac, block, atc, un, data)
    good = build_kq(KqRequest(KqMode.VERIFY_AND_ARPC, *fields, arqc, arc))
    bad = build_kq(KqRequest(KqMode.VERIFY, *fields, bytes(8), arc))
    replies = await _exchange(
        server.port, [b"0001" + good, b"0002" + good + b"\x19TR", b"0003" + bad]
    )
    assert replies == [b"0001KR00" + arpc, b"0002KR00" + arpc + b"\x19TR", b"0003KR01"]
    assert parse_kq(replies[1][4:], KqMode.VERIFY_AND_ARPC) == KqResult(True, arpc)
