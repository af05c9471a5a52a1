"""``hsm-sim``: run the payShield-style HSM simulator as a TCP server.

Options come from (lowest first) defaults, ``--config`` TOML, ``POSP_HSM_*``
environment variables, then command-line flags.  SIGTERM / SIGINT close the
listener, flush held replies and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from hsm_sim.server import start_hsm_server
from hsm_sim.settings import HsmSimSettings, load_settings
from posp.errors import ConfigError
from posp.exposition import ExpositionServer
from posp.log import configure_logging
from posp.loop import loop_name, raise_open_files_limit
from posp.loop import run as run_loop
from posp.version import add_version_flag

log = structlog.get_logger("hsm_sim")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hsm-sim",
        description="payShield-style HSM simulator (variant LMK, host commands over TCP).",
    )
    add_version_flag(parser)
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 1500; 0 = any free)")
    parser.add_argument("--header-length", type=int, help="message header length (default 4)")
    parser.add_argument("--lmk-file", type=Path, help="LMK set file (default: public TEST LMKs)")
    parser.add_argument("--latency-ms", type=float, help="artificial latency per reply (0)")
    parser.add_argument("--max-cps", type=float, help="commands per second cap (0 = unlimited)")
    parser.add_argument("--max-backlog", type=int, help="held replies per connection (256)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (9102; 0 = off)")
    parser.add_argument("--tls-cert-file", type=Path, help="TLS certificate (PEM; default TCP)")
    parser.add_argument("--tls-key-file", type=Path, help="TLS private key (PEM)")
    parser.add_argument(
        "--tls-client-ca-file", type=Path, help="require client certificates signed by this CA"
    )
    parser.add_argument("--log-format", choices=["json", "console"], help="log format")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log level"
    )
    return parser


async def serve(settings: HsmSimSettings) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    registry = CollectorRegistry()
    if settings.metrics_port:
        ExpositionServer(registry, settings.host, settings.metrics_port).start()
        log.info("metrics_listening", port=settings.metrics_port)
    server = await start_hsm_server(settings, registry=registry)
    log.info("hsm_event_loop", event_loop=loop_name())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("hsm_stopping", connections=server.connections)
    await server.close()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"hsm-sim: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_format, settings.log_level)
    raise_open_files_limit()
    try:
        run_loop(serve(settings), server=True)
    except ConfigError as exc:  # LMK file missing or malformed, metrics port taken
        print(f"hsm-sim: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
