"""The TMS HTTP endpoint: a terminal verifies and installs over real HTTP, offers follow
the rollout, and the server refuses paths outside its directories."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posp.tms.rollout import Offer
from posp.tms.server import serve
from terminals.updater import TerminalSoftware, TerminalUpdater
from tests.tms.lab import ACQUIRER, MODEL, Lab


async def _offers(terminal_id: str) -> Offer | None:
    return Offer(7, "P8/V2.0.pkg", "V2.0") if terminal_id == "T0000001" else None


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Lab, str]]:
    lab = Lab.create(tmp_path)
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(lab.repo, "127.0.0.1", 0, offers=_offers, started=bound.set_result)
    )
    port = await asyncio.wait_for(bound, 10)
    try:
        yield lab, f"http://127.0.0.1:{port}"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


async def test_a_terminal_installs_over_http_what_the_offer_names(served: tuple[Lab, str]) -> None:
    lab, base = served
    lab.publish("V2.0")
    status, body = await asyncio.to_thread(_get, f"{base}/offers/T0000001")
    assert status == 200 and b'"P8/V2.0.pkg"' in body
    assert (await asyncio.to_thread(_get, f"{base}/offers/T0000002"))[0] == 404
    updater = TerminalUpdater(
        TerminalSoftware(MODEL, ACQUIRER), lab.built_in_root, lab.tmp / "t1", base
    )
    assert await asyncio.to_thread(updater.install, "P8/V2.0.pkg") is None
    assert updater.software.app_version == "V2.0"


async def test_paths_outside_the_repository_are_not_served(served: tuple[Lab, str]) -> None:
    _, base = served
    status, _ = await asyncio.to_thread(_get, f"{base}/metadata/..%2F..%2Fkeys%2Foffline")
    assert status in (403, 404)
    assert (await asyncio.to_thread(_get, f"{base}/healthz")) == (200, b"ok")
