"""HSM throughput: HsmClient over TCP against ``hsm-sim`` running in a separate process.

Measures M8 MAC verification (algorithm 09, TAK) and CA PIN translation with
``connections`` x ``in_flight`` calls outstanding, for ``duration_s`` each, and
prints calls per second and p50 / p99 latency.  Target: 15,000 M8 per second
with client and simulator on the same 2-core machine.

Run: ``python -m tests.bench hsm`` (or ``python -m tests.bench.bench_hsm``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from posp.crypto.des import adjust_odd_parity, tdes_encrypt_ecb
from posp.crypto.mac import cup_ecb_mac
from posp.crypto.pinblock import iso0_clear_account
from posp.hsm import HsmClient, TcpTransport
from posp.hsm.api import KEY_TAK, KEY_TPK, KEY_ZPK

CONNECTIONS = 4
IN_FLIGHT_PER_CONNECTION = 200
DURATION_S = float(os.environ.get("POSP_BENCH_HSM_SECONDS", "5"))

TAK = adjust_odd_parity(bytes.fromhex("3D3D5E5E7F7F1010"))
TPK = adjust_odd_parity(bytes.fromhex("1111222233334444AAAABBBBCCCCDDDD"))
ZPK = adjust_odd_parity(bytes.fromhex("5B012F0E75970D5DB96EE65249F1D949"))
ACCOUNT12 = "123456789012"
MAB = b"0200" + bytes(range(60))  # a purchase-sized MAC block


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    """``hsm-sim`` in its own process (its own core), quiet logs, no metrics HTTP."""
    command = [sys.executable, "-m", "hsm_sim.cli", "--port", str(port)]
    command += ["--metrics-port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.025)
    proc.kill()
    raise RuntimeError("hsm-sim did not start listening")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    name: str,
    call: Callable[[], Awaitable[object]],
    workers: int,
    duration_s: float,
    simulator_pid: int,
) -> None:
    """Run ``workers`` loops of ``call`` for ``duration_s``; print rate and latencies."""
    latencies_s: list[float] = []
    failures = 0
    clock = time.perf_counter
    stop_at = clock() + duration_s

    async def worker() -> None:
        nonlocal failures
        record = latencies_s.append
        while True:
            started = clock()
            if started >= stop_at:
                return
            try:
                await call()
            except Exception:
                failures += 1
            record(clock() - started)

    started = clock()
    client_cpu_s, simulator_cpu_s = time.process_time(), process_cpu_s(simulator_pid)
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed_s = clock() - started
    client_cpu_s = time.process_time() - client_cpu_s
    simulator_cpu_s = process_cpu_s(simulator_pid) - simulator_cpu_s
    latencies_s.sort()
    count = len(latencies_s)
    p50 = latencies_s[count // 2] * 1000 if count else 0.0
    p99 = latencies_s[min(count - 1, int(count * 0.99))] * 1000 if count else 0.0
    print(
        f"{name:<28} {count / elapsed_s:>9,.0f} calls/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        f"  ({count:,} calls, {failures} failed)",
        flush=True,
    )
    if count:
        client_us, simulator_us = client_cpu_s / count * 1e6, simulator_cpu_s / count * 1e6
        ceiling = 1e6 / max(client_us, simulator_us, 1e-9)
        print(
            f"{'':<28} CPU per call: client {client_us:5.1f} us, simulator {simulator_us:5.1f} us"
            f" -> ceiling ~{ceiling:,.0f} calls/s with a free core each",
            flush=True,
        )


async def run(port: int, simulator_pid: int) -> None:
    transport = TcpTransport(
        "127.0.0.1",
        port,
        connections=CONNECTIONS,
        max_in_flight_per_connection=IN_FLIGHT_PER_CONNECTION,
        timeout_s=5.0,
    )
    client = HsmClient(transport)
    await transport.wait_connected(CONNECTIONS)
    tak = (await client.form_key_from_clear_components(KEY_TAK, [TAK.hex()], "Z")).under_lmk
    tpk = (await client.form_key_from_clear_components(KEY_TPK, [TPK.hex()], "U")).under_lmk
    zpk = (await client.form_key_from_clear_components(KEY_ZPK, [ZPK.hex()], "U")).under_lmk
    mac = cup_ecb_mac(TAK, MAB)
    pin_block = tdes_encrypt_ecb(TPK, iso0_clear_account("123456", ACCOUNT12)).hex().upper()
    assert await client.verify_mac(KEY_TAK, tak, MAB, mac, algorithm="09")

    def verify() -> Awaitable[bool]:
        return client.verify_mac(KEY_TAK, tak, MAB, mac, algorithm="09")

    def translate() -> Awaitable[object]:
        return client.translate_pin_tpk_to_zpk(tpk, zpk, pin_block, ACCOUNT12)

    workers = CONNECTIONS * IN_FLIGHT_PER_CONNECTION
    print(
        f"hsm-sim in a separate process; {CONNECTIONS} connections x "
        f"{IN_FLIGHT_PER_CONNECTION} in flight; {DURATION_S:.0f} s each (2-core machine, "
        "shared with other work: figures are pessimistic)",
        flush=True,
    )
    await measure("M8 verify (alg 09, TAK)", verify, workers, DURATION_S, simulator_pid)
    await measure("CA translate (TPK->ZPK)", translate, workers, DURATION_S, simulator_pid)
    await measure("M8 verify, 1 in flight", verify, 1, min(DURATION_S, 2.0), simulator_pid)
    stats = transport.stats
    print(
        f"client stats: timeouts {stats.timeouts}, late replies {stats.late_replies}, "
        f"reconnects {stats.reconnects}",
        flush=True,
    )
    await client.close()


def main() -> None:
    port = free_port()
    proc = start_simulator(port)
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(run(port, proc.pid))
        else:
            uvloop.run(run(port, proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
