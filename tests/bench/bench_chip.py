"""Chip PIN purchases per second through the FULL path, against magstripe PIN
purchases in the same run: fleet (this process) → ``posp serve`` (SQLite) →
``hsm-sim`` (TCP) and ``issuer-sim serve`` (its own in-process HSM).

A chip purchase costs the issuer one more HSM call (KQ: verify the ARQC, make
the ARPC), the switch an F55 tag check, and the terminal the card's two
GENERATE ACs.  Target: chip ≥ 90 % of magstripe.

The machine is shared, so the two kinds are interleaved: ``POSP_BENCH_ROUNDS``
rounds (default 4: even, so each kind runs first as often) of
``POSP_BENCH_PHASE_SECONDS`` (default 8) magstripe and
the same chip, on one running stack, the first kind alternating by round.
``POSP_BENCH_TERMINALS`` (default 48, as the purchase benchmark: enough to
saturate the cores) terminals use as many
generated lab chip cards plus a few (a card serves one transaction at a time,
so every terminal always finds one no other terminal holds); the issuer loads
the same cards.  The chip count is the cards' first GENERATE ACs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from posp.lab.fleetfile import read_fleet_file
from posp.loop import run as run_loop
from terminals.cards import TerminalCard
from terminals.chip import DEMO_CHIP_CARDS, ChipCardRecord, format_chip_cards, load_chip_cards
from terminals.chipwallet import chip_for, use_chip_cards
from terminals.fleet import FleetConfig, run_fleet
from tests.bench.bench_purchase import cpu_s, full_stack

TARGET_RATIO = 0.90


def write_lab_cards(data: Path, count: int) -> tuple[Path, Path, list[TerminalCard]]:
    """``count`` generated CUP cards with ample balances: the issuer's card file, the
    matching lab chip card file (the demo IMKs) and the terminals' view of them."""
    demo = load_chip_cards(DEMO_CHIP_CARDS)[0]
    pans = [_with_luhn(f"622588{n:012d}") for n in range(1, count + 1)]
    cards_file, chip_file = data / "bench_cards.csv", data / "bench_chip_cards.csv"
    rows = [
        ",".join((p, "3012", "123456", "active", "1000000000", "1000000000", "CUP")) for p in pans
    ]
    cards_file.write_text("pan,expiry,pin,status,balance_minor,daily_limit_minor,card_org\n"
                          + "\n".join(rows) + "\n")  # fmt: skip
    records = [ChipCardRecord(p, "01", demo.imk_ac, demo.imk_smi, 0) for p in pans]
    chip_file.write_text(format_chip_cards(records))
    return cards_file, chip_file, [TerminalCard(p, "3012", "123456") for p in pans]


def _with_luhn(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


async def phase(
    procs: dict[str, subprocess.Popen[bytes]],
    fleet_file: Path,
    port: int,
    seconds: float,
    ic_ratio: float,
    cards: list[TerminalCard],
) -> tuple[float, int, dict[str, float]]:
    """(approved per second, chip first GENERATE ACs, CPU µs per approval by process)
    of one closed-loop phase."""
    atcs_before = sum(chip.atc for c in cards if (chip := chip_for(c.pan)) is not None)
    config = FleetConfig(
        terminals=read_fleet_file(fleet_file),
        cards=cards,
        port=port,
        duration_s=seconds,
        mix={"purchase": 1},
        pin_ratio=1.0,
        ic_ratio=ic_ratio,
        long_connections=True,
        seed=11,
    )
    cpu_before = {name: cpu_s(p.pid) for name, p in procs.items()}
    own_before = time.process_time()
    report = await run_fleet(config)
    used = {name: cpu_s(p.pid) - cpu_before[name] for name, p in procs.items()}
    used["fleet"] = time.process_time() - own_before
    atcs_after = sum(chip.atc for c in cards if (chip := chip_for(c.pan)) is not None)
    approved = report.load_response_codes.get("00", 0)
    declined = {k: v for k, v in report.load_response_codes.items() if k != "00"}
    if declined or report.timeouts:
        print(f"    (not approved: {declined}, timeouts {report.timeouts})")
    per_approval_us = {name: cpu / max(approved, 1) * 1e6 for name, cpu in used.items()}
    return approved / report.duration_s, atcs_after - atcs_before, per_approval_us


def cpu_line(label: str, costs: list[dict[str, float]]) -> str:
    """Mean CPU µs per approval by process over the rounds."""
    names = list(costs[0])
    means = {n: sum(c[n] for c in costs) / len(costs) for n in names}
    parts = " ".join(f"{n}={v:.0f}" for n, v in means.items())
    return f"  CPU us per approved {label}: {parts} all={sum(means.values()):.0f}"


async def interleaved(
    procs: dict[str, subprocess.Popen[bytes]],
    fleet_file: Path,
    port: int,
    rounds: int,
    seconds: float,
    cards: list[TerminalCard],
) -> None:
    magstripe: list[float] = []
    chip: list[float] = []
    mag_costs: list[dict[str, float]] = []
    chip_costs: list[dict[str, float]] = []
    for n in range(rounds):
        # Which kind runs first alternates: the second phase of a round runs on a
        # store and counters the first has grown, and the machine drifts.
        if n % 2 == 0:
            mag_rate, _, mag_cost = await phase(procs, fleet_file, port, seconds, 0.0, cards)
            chip_rate, chip_reads, chip_cost = await phase(
                procs, fleet_file, port, seconds, 1.0, cards
            )
        else:
            chip_rate, chip_reads, chip_cost = await phase(
                procs, fleet_file, port, seconds, 1.0, cards
            )
            mag_rate, _, mag_cost = await phase(procs, fleet_file, port, seconds, 0.0, cards)
        magstripe.append(mag_rate)
        chip.append(chip_rate)
        mag_costs.append(mag_cost)
        chip_costs.append(chip_cost)
        print(
            f"  round {n + 1}: magstripe {mag_rate:,.0f}/s, chip {chip_rate:,.0f}/s"
            f" ({chip_reads} chip reads)"
        )
    mag_mean, chip_mean = sum(magstripe) / rounds, sum(chip) / rounds
    ratio = chip_mean / mag_mean if mag_mean else 0.0
    print(
        f"  mean: magstripe PIN purchases {mag_mean:,.0f}/s, chip PIN purchases"
        f" {chip_mean:,.0f}/s, chip/magstripe {ratio:.0%}"
    )
    print(cpu_line("magstripe", mag_costs))
    print(cpu_line("chip", chip_costs))
    verdict = "MET" if ratio >= TARGET_RATIO else "not met"
    print(f"  target: chip >= {TARGET_RATIO:.0%} of magstripe: {verdict}")


def run(rounds: int, seconds: float, terminals: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-chip-cards-") as tmp:
        cards_file, chip_file, cards = write_lab_cards(Path(tmp), terminals + 4)
        use_chip_cards(chip_file)
        issuer_env = {
            "POSP_ISSUER_CARDS": str(cards_file),
            "POSP_ISSUER_CHIP_CARDS": str(chip_file),
        }
        with full_stack(terminals, 1, issuer_env) as (procs, fleet_file, term_port):
            print(
                f"full-path PIN purchases, chip vs magstripe, {terminals} terminals,"
                f" {len(cards)} cards, {rounds} rounds of {seconds:.0f} s each, 1 switch process"
            )
            run_loop(interleaved(procs, fleet_file, term_port, rounds, seconds, cards), server=True)


def main() -> None:
    rounds = int(os.environ.get("POSP_BENCH_ROUNDS", "4"))
    seconds = float(os.environ.get("POSP_BENCH_PHASE_SECONDS", "8"))
    terminals = int(os.environ.get("POSP_BENCH_TERMINALS", "48"))
    run(rounds, seconds, terminals)


if __name__ == "__main__":
    main()
