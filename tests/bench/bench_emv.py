"""Micro-benchmark of chip cards: KQ ARQC verifications (+ ARPC) per second
through ``HsmEngine.handle`` (no sockets), per scheme, for comparison with
bench_hsm_engine's M8 rate (a chip purchase adds one KQ at the issuer), and
F55 decodes per second (the switch decodes every chip request's F55 once).
"""

from __future__ import annotations

import random
import time

from hsm_sim.engine import HsmEngine
from posp.crypto.des import adjust_odd_parity
from posp.crypto.emv import CardKeys, Scheme, pan_psn_block
from posp.hsm.kq import KqMode, KqRequest, build_kq
from posp.iso8583.tlv import decode_f55
from terminals.chip import DEMO_CHIP_CARDS, ChipCard, TerminalChipData, load_chip_cards
from tests.bench.bench_hsm_engine import _rate, _under_lmk

_CARDS = 64
_AC_DATA_BYTES = 37  # 9F02 ... 9F36 + CVR, as terminal-link.md §8 lists them


def kq_requests(engine: HsmEngine, scheme: Scheme, issuers: int = 4) -> list[bytes]:
    """KQ mode 1 for 64 cards of a few issuers (one IMK-AC each), each with a genuine ARQC."""
    rng = random.Random(16)
    imks = [adjust_odd_parity(rng.randbytes(16)) for _ in range(issuers)]
    wires = [_under_lmk(engine, "109", imk.hex().upper()) for imk in imks]
    requests = []
    for i in range(_CARDS):
        imk, wire = imks[i % issuers], wires[i % issuers]
        block = pan_psn_block(f"62258800{i:08d}", "01")
        atc, un, data = rng.randbytes(2), rng.randbytes(4), rng.randbytes(_AC_DATA_BYTES)
        arqc = CardKeys.derive(imk, block, scheme, atc, un).cryptogram(data)
        request = KqRequest(KqMode.VERIFY_AND_ARPC, scheme, wire, block, atc, un, data, arqc, b"00")
        requests.append(b"%04d" % i + build_kq(request))
    return requests


def main() -> None:
    engine = HsmEngine()
    for scheme in Scheme:
        requests = kq_requests(engine, scheme)
        assert all(engine.handle(r)[6:8] == b"00" for r in requests)
        rate = _rate(engine, requests)
        name = f"scheme {int(scheme)} ({scheme.name.lower()})"
        print(f"hsm engine KQ mode 1, {name}: {rate:,.0f} verifications+ARPC/s")
    f55 = ChipCard(load_chip_cards(DEMO_CHIP_CARDS)[0]).first_generate_ac(
        TerminalChipData(amount_minor=100, date_yymmdd="261203", un=bytes(4))
    )
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        for _ in range(1000):
            decode_f55(f55)
        count += 1000
    rate = count / (time.perf_counter() - start)
    print(f"F55 decode ({len(f55)}-byte online request, 20 tags): {rate:,.0f} decodes/s")
    print("(single core, engine.handle only; the machine is shared, figures are pessimistic)")


if __name__ == "__main__":
    main()
