"""The TMS endpoint (aiohttp): TUF metadata and packages as static files, the
offer a rollout makes to a terminal, and the timestamp kept fresh.

Routes::

    GET /metadata/<file>        TUF metadata (N.root.json, timestamp.json, ...)
    GET /targets/<model>/<file> packages, named <sha256>.<version>.pkg
    GET /offers/<terminal id>   200 {"target", "app_version", "rollout"} or 404
    GET /healthz                200 "ok"

Invariants:
* Trust never depends on this server: terminals verify everything it serves
  against their built-in root (a compromised server can withhold updates,
  not install one).  Files are served by aiohttp's static handler, which
  refuses paths leaving the directory.
* The timestamp is re-signed every ``timestamp_refresh_s`` with the online
  key, so an honest server never lets terminals see an expired timestamp; a
  failed refresh is logged and retried at the next tick, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from posp.log import get_logger
from posp.tms.keys import TmsError
from posp.tms.repository import TufRepository
from posp.tms.rollout import Offer

log = get_logger("posp.tms")
OfferLookup = Callable[[str], Awaitable[Offer | None]]
_TERMINAL_ID_MAX: Final = 16


def build_app(repo: TufRepository, offers: OfferLookup | None = None) -> web.Application:
    app = web.Application()
    app.router.add_static("/metadata", repo.metadata_dir, follow_symlinks=False)
    app.router.add_static("/targets", repo.targets_dir, follow_symlinks=False)

    async def offer(request: web.Request) -> web.Response:
        terminal_id = request.match_info["terminal_id"]
        if offers is None or not (terminal_id.isalnum() and len(terminal_id) <= _TERMINAL_ID_MAX):
            raise web.HTTPNotFound()
        found = await offers(terminal_id)
        if found is None:
            raise web.HTTPNotFound()
        body = {
            "target": found.target,
            "app_version": found.app_version,
            "rollout": found.rollout_id,
        }
        return web.json_response(body)

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/offers/{terminal_id}", offer)
    app.router.add_get("/healthz", health)
    return app


async def keep_timestamp_fresh(repo: TufRepository, every_s: float) -> None:
    """Re-sign the timestamp every ``every_s`` until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        try:
            version = await asyncio.to_thread(repo.refresh)
        except (TmsError, OSError) as exc:
            log.warning("tms_timestamp_refresh_failed", error=str(exc))
        else:
            log.info("tms_timestamp_refreshed", version=version)


async def serve(
    repo: TufRepository,
    host: str,
    port: int,
    *,
    offers: OfferLookup | None = None,
    refresh_every_s: float = 3600.0,
    started: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set or the task is cancelled; ``started`` gets the bound port."""
    runner = web.AppRunner(build_app(repo, offers), access_log=None)
    await runner.setup()
    refresher = asyncio.create_task(keep_timestamp_fresh(repo, refresh_every_s))
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("tms_listening", host=host, port=bound)
        if started is not None:
            started(bound)
        await (stop or asyncio.Event()).wait()
        log.info("tms_stopping")
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await runner.cleanup()
