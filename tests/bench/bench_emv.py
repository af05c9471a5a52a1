"""Micro-benchmark of chip-card cryptography: KQ ARQC verifications (+ ARPC) per second
through ``HsmEngine.handle`` (no sockets), per scheme, and the card side's
``CardKeys`` derivation + ARQC, for comparison with bench_hsm_engine's M8 rate.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from hsm_sim.engine import HsmEngine
from posp.crypto.des import adjust_odd_parity
from posp.crypto.emv import CardKeys, Scheme, pan_psn_block
from posp.hsm.kq import KqMode, KqRequest, build_kq

_CARDS = 64
_AC_DATA_BYTES = 37  # 9F02 ... 9F36 + CVR, as terminal-link.md §8 lists them


def _under_lmk(engine: HsmEngine, clear: bytes) -> str:
    reply = engine.handle(b"0000K0109U1" + clear.hex().upper().encode())
    return reply[8:-6].decode()


def kq_requests(engine: HsmEngine, scheme: Scheme, issuers: int = 4) -> list[bytes]:
    """KQ mode 1 for 64 cards of a few issuers (one IMK-AC each), each with a genuine ARQC."""
    rng = random.Random(16)
    imks = [adjust_odd_parity(rng.randbytes(16)) for _ in range(issuers)]
    wires = [_under_lmk(engine, imk) for imk in imks]
    requests = []
    for i in range(_CARDS):
        imk, wire = imks[i % issuers], wires[i % issuers]
        block = pan_psn_block(f"62258800{i:08d}", "01")
        atc, un, data = rng.randbytes(2), rng.randbytes(4), rng.randbytes(_AC_DATA_BYTES)
        arqc = CardKeys.derive(imk, block, scheme, atc, un).cryptogram(data)
        request = KqRequest(KqMode.VERIFY_AND_ARPC, scheme, wire, block, atc, un, data, arqc, b"00")
        requests.append(b"%04d" % i + build_kq(request))
    return requests


def _rate(work: list[bytes], call: Callable[[bytes], bytes], seconds: float = 1.5) -> float:
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for item in work:
            call(item)
        count += len(work)
    return count / (time.perf_counter() - start)


def main() -> None:
    engine = HsmEngine()
    for scheme in Scheme:
        requests = kq_requests(engine, scheme)
        assert all(engine.handle(r)[6:8] == b"00" for r in requests)
        rate = _rate(requests, engine.handle)
        name = f"scheme {int(scheme)} ({scheme.name.lower()})"
        print(f"hsm engine KQ mode 1, {name}: {rate:,.0f} verifications+ARPC/s")
    imk, block = adjust_odd_parity(bytes(range(16))), pan_psn_block("6225880000000001", "01")
    data = bytes(_AC_DATA_BYTES)

    def card_arqc(atc: bytes) -> bytes:
        return CardKeys.derive(imk, block, Scheme.PBOC_V01, atc).cryptogram(data)

    atcs = [i.to_bytes(2, "big") for i in range(64)]
    print(f"card side PBOC v01 key derivation + ARQC: {_rate(atcs, card_arqc):,.0f} ARQCs/s")
    print("(single core, engine.handle only; the machine is shared, figures are pessimistic)")


if __name__ == "__main__":
    main()
