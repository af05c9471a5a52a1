"""``posp up``: the whole lab stack in one process (what ``make run`` calls).

``posp up`` starts, in this order and in ONE event loop:

1. the HSM simulator's TCP server (``hsm_sim.server.start_hsm_server``, port 1500),
   which the switch and the issuer simulator both use, so operators can watch it;
2. the issuer simulator with the demo cards (``issuer_sim.start_issuer``, port 9583);
3. demo provisioning on first start: merchant :data:`DEMO_MERCHANT`, terminals
   ``1000000x`` with random TMKs and the fleet file ``<data_dir>/demo-fleet.json``
   (idempotent: existing terminals whose TMK the fleet file knows are kept);
4. the switch (terminal port 5800, metrics 9100) linked to that issuer;
5. unless ``--no-demo``: a short fleet run (sign-in, purchases with PINs, a void, a
   refund, settlement) whose report is printed; then it keeps serving until
   SIGINT/SIGTERM (or stops at once with ``--exit-after-demo``).

Shutdown runs in reverse order of start (an ``AsyncExitStack``): the switch drains
first, then the issuer, then the HSM.

Invariant: every component started here is stopped here, also when a later one
fails to start.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.table import Table

from hsm_sim.server import start_hsm_server
from issuer_sim.app import start_issuer
from issuer_sim.settings import load_settings as load_issuer_settings
from posp.admin import open_admin
from posp.lab.fleet import FleetProvisioned, provision_fleet
from posp.lab.fleetfile import read_fleet_file
from posp.serve import start_switch, stop_on_signals
from posp.settings import Settings
from terminals.cards import load_cards
from terminals.fleet import FleetConfig, run_fleet
from terminals.fleet_view import report_table
from terminals.mix import parse_mix

DEMO_MERCHANT: Final = "898100000000001"
DEMO_MERCHANT_NAME: Final = "posp demo store"
DEMO_PREFIX: Final = "1000"
DEMO_FLEET_FILE: Final = "demo-fleet.json"
HSM_PORT_DEFAULT: Final = 1500
ISSUER_PORT_DEFAULT: Final = 9583


@dataclass(frozen=True, slots=True)
class StackOptions:
    demo: bool = True
    demo_seconds: float = 5.0
    demo_terminals: int = 5
    exit_after_demo: bool = False
    hsm_port: int = HSM_PORT_DEFAULT  # 0 = any free port (tests)
    issuer_port: int = ISSUER_PORT_DEFAULT


# --- the lab stack ----------------------------------------------------------------


@dataclass(slots=True)
class Endpoints:
    terminal_port: int = 0
    metrics_url: str = ""
    hsm_port: int = 0
    issuer_port: int = 0
    fleet_file: Path | None = None


async def start_hsm(options: StackOptions, stack: AsyncExitStack) -> int:
    server = await start_hsm_server(port=options.hsm_port, metrics_port=0)
    stack.push_async_callback(server.close)
    return int(server.port)


async def start_issuer_sim(options: StackOptions, hsm_url: str, stack: AsyncExitStack) -> int:
    issuer_settings = load_issuer_settings(None, port=options.issuer_port, hsm=hsm_url)
    server = await start_issuer(issuer_settings)
    stack.push_async_callback(server.close)
    return int(server.port)


async def provision_demo(settings: Settings, count: int) -> FleetProvisioned:
    """Demo merchant, ``count`` terminals and the demo fleet file (idempotent).

    The demo terminals are the demo's own: those whose clear TMK the demo fleet
    file lost are re-keyed (``rekey_existing``), as ``make run`` always did."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with open_admin(settings, hsm=True) as admin:
        return await provision_fleet(
            admin,
            rekey_existing=True,
            count=count,
            merchant_id=DEMO_MERCHANT,
            prefix=DEMO_PREFIX,
            fleet_file=settings.data_dir / DEMO_FLEET_FILE,
            merchant_name=DEMO_MERCHANT_NAME,
        )


def stack_settings(settings: Settings, hsm_port: int, issuer_port: int) -> Settings:
    """The switch's settings pointed at the HSM and issuer this process started."""
    network = settings.network.model_copy(update={"host": "127.0.0.1", "port": issuer_port})
    return settings.model_copy(
        update={"hsm_url": f"tcp://127.0.0.1:{hsm_port}", "network": network}
    )


def print_endpoints(out: Console, where: Endpoints) -> None:
    table = Table(title="posp up: the stack is listening", title_justify="left")
    table.add_column("component")
    table.add_column("where")
    table.add_row("switch terminal port", f"127.0.0.1:{where.terminal_port}")
    table.add_row("switch metrics", where.metrics_url or "off")
    table.add_row("HSM simulator", f"127.0.0.1:{where.hsm_port}")
    table.add_row("issuer simulator", f"127.0.0.1:{where.issuer_port}")
    table.add_row("demo fleet file (clear TMKs, lab only)", str(where.fleet_file))
    out.print(table)


#: The demo's transaction mix: mostly purchases, with voids and refunds to settle.
DEMO_MIX: Final = "purchase=70,balance=10,void=10,refund=10"


async def run_demo(
    out: Console, terminal_port: int, fleet_file: Path | None, seconds: float
) -> None:
    """A short fleet run against the switch: sign-in, purchases (half with PINs),
    voids, refunds and a settlement with batch upload per terminal; prints the report."""
    if fleet_file is None:
        return
    out.print(f"demo: {seconds:g} s of simulated terminals ...", highlight=False)
    config = FleetConfig(
        terminals=read_fleet_file(fleet_file),
        cards=[card for card in load_cards() if card.active],
        port=terminal_port,
        duration_s=seconds,
        mix=parse_mix(DEMO_MIX),
        pin_ratio=0.5,
        # every terminal settles (and uploads its batch) once within the run
        settle_every_s=max(seconds * 0.9, 0.5),
    )
    report = await run_fleet(config)
    out.print(report_table(report))


async def up(settings: Settings, out: Console, options: StackOptions) -> int:
    """``posp up``; returns the exit status."""
    stop = asyncio.Event()
    where = Endpoints()
    with stop_on_signals(stop):
        async with AsyncExitStack() as stack:
            where.hsm_port = await start_hsm(options, stack)
            hsm_url = f"tcp://127.0.0.1:{where.hsm_port}"
            where.issuer_port = await start_issuer_sim(options, hsm_url, stack)
            settings = stack_settings(settings, where.hsm_port, where.issuer_port)
            provisioned = await provision_demo(settings, max(options.demo_terminals, 1))
            where.fleet_file = provisioned.fleet_file
            switch = await start_switch(settings, stack)
            where.terminal_port = int(switch.port)
            metrics_port = switch.metrics_port
            if settings.metrics_enabled:
                where.metrics_url = f"http://{settings.metrics_host}:{metrics_port}/metrics"
            print_endpoints(out, where)
            if options.demo:
                await run_demo(out, where.terminal_port, where.fleet_file, options.demo_seconds)
            if options.exit_after_demo:
                return 0
            out.print("serving; Ctrl-C to stop", highlight=False)
            await stop.wait()
            out.print("stopping: switch, issuer simulator, HSM simulator", highlight=False)
    return 0
