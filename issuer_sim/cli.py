"""``issuer-sim``: the simulated card network and issuers.

    issuer-sim serve [--config FILE] [--host H] [--port P] [--cards FILE] [--db FILE]
                     [--hsm URL] [--latency-ms N] [--drop-rate R]
                     [--key-exchange-interval-s S] [--metrics-port P] [--control-port P]
    issuer-sim cards list   --db FILE
    issuer-sim cards add    --db FILE --pan PAN --expiry YYMM --pin PIN [--balance MINOR]
                            [--chip-psn NN [--imk-ac 32H]]  (a chip card; default: not)
                            [--daily-limit MINOR] [--status S] [--org CUP]
    issuer-sim cards import --db FILE CARDS.csv

Settings: defaults < ``--config`` TOML < ``POSP_ISSUER_*`` environment < flags.
``cards`` commands edit the SQLite file; a running server reads it at start.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from issuer_sim.app import start_issuer
from issuer_sim.cardfile import CardRecord, parse_card_row, read_card_file
from issuer_sim.chipissuer import ChipStore, provision_chip
from issuer_sim.control import start_control
from issuer_sim.db import CardDb
from issuer_sim.ledger import Ledger
from issuer_sim.provisioning import provision
from issuer_sim.settings import IssuerSettings, load_settings
from posp.errors import ConfigError, PospError
from posp.exposition import ExpositionServer
from posp.hsm import open_hsm_client
from posp.iso8583 import mask_pan
from posp.log import configure_logging, get_logger
from posp.loop import loop_name, raise_open_files_limit
from posp.loop import run as run_loop
from posp.version import add_version_flag

log = get_logger("issuer_sim")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="issuer-sim", description="Card network simulator.")
    add_version_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the network link server")
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.add_argument("--host", help="listen address (127.0.0.1)")
    serve.add_argument("--port", type=int, help="network link port (9583)")
    serve.add_argument("--cards", type=Path, help="card file loaded into an empty db")
    serve.add_argument("--db", help="SQLite file for accounts (default: memory)")
    serve.add_argument(
        "--durable",
        action="store_const",
        const=True,
        help="commit every ledger change to --db before its answer is sent",
    )
    serve.add_argument("--hsm", help="inprocess:// (default) or tcp://host:port")
    serve.add_argument("--latency-ms", type=float, help="delay per financial answer")
    serve.add_argument("--drop-rate", type=float, help="share of answers dropped (0..1)")
    serve.add_argument("--key-exchange-interval-s", type=float, help="0 = never initiate")
    serve.add_argument("--metrics-port", type=int, help="Prometheus port (0 = off)")
    serve.add_argument("--control-port", type=int, help="HTTP JSON control port (0 = off)")
    cards = commands.add_parser("cards", help="manage card accounts in the db").add_subparsers(
        dest="cards_command", required=True
    )
    listing = cards.add_parser("list", help="list accounts (PANs masked)")
    listing.add_argument("--db", required=True)
    add = cards.add_parser("add", help="add or replace one card")
    add.add_argument("--db", required=True)
    add.add_argument("--pan", required=True)
    add.add_argument("--expiry", required=True, help="YYMM")
    add.add_argument("--pin", required=True)
    add.add_argument("--balance", default="100000000", help="minor units")
    add.add_argument("--daily-limit", default="5000000000", help="minor units")
    add.add_argument("--status", default="active")
    add.add_argument("--org", default="CUP")
    add.add_argument("--hsm", default="inprocess://")
    add.add_argument("--chip-psn", help="make it a chip card with this PSN (2 digits)")
    add.add_argument("--imk-ac", help="chip: clear lab IMK-AC (32H); default: HSM-generated")
    imp = cards.add_parser("import", help="load a card file")
    imp.add_argument("--db", required=True)
    imp.add_argument("file", type=Path)
    imp.add_argument("--hsm", default="inprocess://")
    return parser


async def serve(settings: IssuerSettings) -> None:
    registry = CollectorRegistry()
    if settings.metrics_port:
        ExpositionServer(registry, settings.host, settings.metrics_port).start()
    server = await start_issuer(settings, registry=registry)
    control = None
    if settings.control_port:
        control = await start_control(server, settings.host, settings.control_port)
    log.info(
        "issuer_listening",
        host=settings.host,
        port=server.port,
        cards=len(server.ledger.accounts),
        event_loop=loop_name(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if control is not None:
        control.close()
    await server.close()


async def add_cards(db_path: str, hsm_url: str, records: list[CardRecord]) -> None:
    hsm = open_hsm_client(hsm_url)
    db = CardDb(db_path)
    ledger = Ledger()
    for record in records:
        ledger.put_account(await provision(hsm, load_settings(None).pvk_lmk, record))
    await db.flush(ledger)
    await db.close()
    await hsm.close()


def _existing(path: Path, option: str, what: str) -> Path:
    """``path``, or ConfigError naming the option when there is no such file."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist ({option})")
    return path


async def add_chip(db_path: str, hsm_url: str, pan: str, psn: str, imk_ac: str | None) -> None:
    """Make ``pan`` a chip card: its IMK-AC under the LMK in the db's chip book."""
    hsm = open_hsm_client(hsm_url)
    try:
        account = await provision_chip(hsm, pan, psn, imk_ac)
    finally:
        await hsm.close()
    store = ChipStore(db_path)
    store.save([account])
    store.close()


async def list_cards(db_path: str) -> None:
    db = CardDb(str(_existing(Path(db_path), "--db", "database file")))  # never create it
    ledger = Ledger()
    await db.load(ledger)
    await db.close()
    for a in ledger.accounts.values():
        amounts = f"balance={a.balance_minor} held={a.held_minor} limit={a.daily_limit_minor}"
        print(f"{mask_pan(a.pan)}  {a.expiry}  {a.status:<10} {a.card_org}  {amounts}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
            settings = load_settings(args.config, **flags)
            if settings.durable and not settings.db:
                raise ConfigError("durable (--durable) needs a database file (db, --db)")
            if settings.cards is not None:
                _existing(settings.cards, "--cards", "card file")
            configure_logging(settings.log_format, settings.log_level)
            raise_open_files_limit()
            run_loop(serve(settings), server=True)
        elif args.cards_command == "list":
            asyncio.run(list_cards(args.db))
        elif args.cards_command == "add":
            row = {
                "pan": args.pan, "expiry": args.expiry, "pin": args.pin, "status": args.status,
                "balance_minor": args.balance, "daily_limit_minor": args.daily_limit,
                "card_org": args.org,
            }  # fmt: skip
            record = parse_card_row(row, 1)
            asyncio.run(add_cards(args.db, args.hsm, [record]))
            if args.chip_psn is not None:
                asyncio.run(add_chip(args.db, args.hsm, record.pan, args.chip_psn, args.imk_ac))
        else:
            records = read_card_file(_existing(args.file, "CARDS.csv", "card file"))
            asyncio.run(add_cards(args.db, args.hsm, records))
    except (ConfigError, ValueError, PospError) as exc:
        print(f"issuer-sim: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
