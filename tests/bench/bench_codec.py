"""Codec speed: our terminal-link codec against pyiso8583 on the same message,
plus the network-link 0200.  Prints µs per call and the speed-up ratios."""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import iso8583

from posp.iso8583 import (
    Message,
    NetworkFrame,
    NetworkHeader,
    TerminalFrame,
    decode_network,
    decode_terminal,
    encode_network,
    encode_terminal,
)
from tests.iso8583.pyiso_spec import terminal_spec

# A contact-chip purchase: vectors.json frame_purchase_0200 plus F23 and F55.
_IC_DATA = bytes.fromhex(
    "9F2608C2A5D3E8B1F0473A9F2701809F101307010103A0A000010A010000000000F1D6B2C79F37"
    "04A1B2C3D49F36020012950500000000009A032503159C01009F02060000000100005F2A0201"
    "56820254009F1A0201569F03060000000000009F3303E0F9C8"
)
PURCHASE = TerminalFrame(
    tpdu=bytes.fromhex("6000030000"),
    header="613100000000",
    message=Message(
        "0200",
        {
            2: "6225880000000001",
            3: "000000",
            4: "000000010000",
            11: "000002",
            14: "2812",
            22: "051",
            23: "001",
            25: "00",
            26: "12",
            35: "6225880000000001=2812101000000000000",
            41: "12345678",
            42: "123456789012345",
            49: "156",
            52: bytes.fromhex("802457237533C956"),
            53: "2600000000000000",
            55: _IC_DATA,
            60: "22000001000",
            64: b"2E9903F5",
        },
    ),
)

NETWORK_PURCHASE = NetworkFrame(
    header=NetworkHeader(destination="00010000", source="48020000"),
    message=Message(
        "0200",
        {
            2: "6225880000000001",
            3: "000000",
            4: "000000010000",
            7: "0315120210",
            11: "000123",
            12: "120210",
            13: "0315",
            14: "2812",
            18: "5411",
            22: "051",
            23: "001",
            25: "00",
            26: "12",
            32: "48020000",
            33: "48020000",
            35: "6225880000000001=2812101000000000000",
            37: "250315000123",
            41: "12345678",
            42: "123456789012345",
            43: "POSP DEMO STORE                 SHANGHAI",
            49: "156",
            52: bytes.fromhex("1A2B3C4D5E6F7081"),
            53: "2600000000000000",
            55: _IC_DATA,
            60: "22",
            100: "00010000",
            128: bytes.fromhex("0102030405060708"),
        },
    ),
)


def pyiso_doc(frame: TerminalFrame) -> dict[str, Any]:
    """The same message as a pyiso8583 document (hex for b and BCD data)."""
    doc: dict[str, Any] = {"h": (frame.tpdu.hex() + frame.header).upper(), "t": frame.message.mti}
    for n, value in frame.message.fields.items():
        if isinstance(value, bytes):
            doc[str(n)] = value.hex().upper()
        elif n in (35, 36):
            doc[str(n)] = value.replace("=", "D")
        else:
            doc[str(n)] = value
    return doc


def per_call_us(fns: list[Callable[[], object]], iterations: int, rounds: int = 5) -> list[float]:
    """Best-of-``rounds`` µs per call of each function, rounds interleaved so that
    load from other processes on the machine hits every contender alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            elapsed_s = timeit.timeit(fn, number=iterations)
            best[i] = min(best[i], elapsed_s / iterations * 1e6)
    return best


def main() -> None:
    iterations = 5_000
    spec = terminal_spec()
    body = encode_terminal(PURCHASE)
    doc = pyiso_doc(PURCHASE)
    theirs_body = bytes(iso8583.encode(doc, spec)[0])
    assert theirs_body == body, "pyiso8583 and posp disagree on the benchmark message"

    ours_enc, theirs_enc, ours_dec, theirs_dec = per_call_us(
        [
            lambda: encode_terminal(PURCHASE),
            lambda: iso8583.encode(doc, spec),
            lambda: decode_terminal(body),
            lambda: iso8583.decode(body, spec),
        ],
        iterations,
    )
    print(f"terminal 0200 purchase, {len(body)} bytes, {len(PURCHASE.message.fields)} fields")
    print(f"  posp      encode {ours_enc:7.2f} µs   decode {ours_dec:7.2f} µs")
    print(f"  pyiso8583 encode {theirs_enc:7.2f} µs   decode {theirs_dec:7.2f} µs")
    print(f"  encode speed-up vs pyiso8583: {theirs_enc / ours_enc:.1f}x")
    print(f"  decode speed-up vs pyiso8583: {theirs_dec / ours_dec:.1f}x")

    net_body = encode_network(NETWORK_PURCHASE)
    net_enc, net_dec = per_call_us(
        [lambda: encode_network(NETWORK_PURCHASE), lambda: decode_network(net_body)], iterations
    )
    print(f"network 0200, {len(net_body)} bytes, {len(NETWORK_PURCHASE.message.fields)} fields")
    print(f"  posp      encode {net_enc:7.2f} µs   decode {net_dec:7.2f} µs")


if __name__ == "__main__":
    main()
