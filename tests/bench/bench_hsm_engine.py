"""Micro-benchmark of the HSM command engine: M8 verifications and CA translations per
second through ``HsmEngine.handle`` directly (no sockets).

The TCP simulator's target is 15,000 M8/s; this shows the engine's share of it.
"""

from __future__ import annotations

import time

from hsm_sim.engine import HsmEngine
from posp.crypto.des import tdes_encrypt_ecb
from posp.crypto.mac import cup_ecb_mac
from posp.crypto.pinblock import iso0_clear

ZAK = "0123456789ABCDEFFEDCBA9876543210"
MAK = "5DBF7F38A146FD5D"
TPK = "0123456789ABCDEFFEDCBA9876543210"
ZPK = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A"
MAB = bytes(range(120))  # about the size of a purchase MAB


def _under_lmk(engine: HsmEngine, type_code: str, clear_hex: str) -> str:
    scheme = "U" if len(clear_hex) == 32 else "Z"
    reply = engine.handle(f"0000K0{type_code}{scheme}1{clear_hex}".encode())
    return reply[8:-6].decode()


def _rate(engine: HsmEngine, requests: list[bytes], seconds: float = 1.5) -> float:
    handle = engine.handle
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for request in requests:
            handle(request)
        count += len(requests)
    return count / (time.perf_counter() - start)


def m8_requests(engine: HsmEngine) -> list[bytes]:
    """M8 alg 09 (the terminal MAC) under 64 terminals' TAKs."""
    requests = []
    for i in range(64):
        mak = f"{i:02X}" + MAK[2:]
        tak = _under_lmk(engine, "003", mak)
        mac = cup_ecb_mac(bytes.fromhex(mak), MAB).hex().upper()
        requests.append(f"{i:04d}M800091003{tak}{len(MAB):04X}".encode() + MAB + mac.encode())
    return requests


def ca_requests(engine: HsmEngine) -> list[bytes]:
    tpk = _under_lmk(engine, "002", TPK)
    zpk = _under_lmk(engine, "001", ZPK)
    block = tdes_encrypt_ecb(bytes.fromhex(TPK), iso0_clear("123456", "6225880000000001"))
    return [f"0001CA{tpk}{zpk}12{block.hex().upper()}0101588000000000".encode()]


def main() -> None:
    engine = HsmEngine()
    m8 = m8_requests(engine)
    assert all(engine.handle(r)[6:8] == b"00" for r in m8)
    ca = ca_requests(engine)
    assert engine.handle(ca[0])[6:8] == b"00"
    print(f"hsm engine M8 (alg 09, 120-byte MAB): {_rate(engine, m8):,.0f} commands/s")
    print(f"hsm engine CA (TPK->ZPK, format 01):  {_rate(engine, ca):,.0f} commands/s")
    print("(single core, engine.handle only; the machine is shared, figures are pessimistic)")


if __name__ == "__main__":
    main()
