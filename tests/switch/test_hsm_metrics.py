"""Every HSM metric the README lists is exported by a switch started as `posp serve`
starts it, with a TCP HSM: the client is built with the switch's registry."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hsm_sim.server import start_hsm_server
from posp.serve import start_switch

from .conftest import switch_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_hsm_metrics() -> set[str]:
    """The switch's HSM metric names in the README's Monitoring section (prefix posp_)."""
    section = README.read_text(encoding="utf-8").split("## Monitoring", 1)[1]
    switch_part = section.split("`hsm-sim` exports", 1)[0]
    names = {
        re.sub(r"\{.*\}", "", n) for n in re.findall(r"`([a-z_]+(?:\{[a-z_,]+\})?)`", switch_part)
    }
    return {f"posp_{n}" for n in names if n.startswith("hsm_")}


def scrape(port: int) -> dict[str, set[str]]:
    """family name -> sample names of one scrape of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {f.name: {s.name for s in f.samples} for f in text_string_to_metric_families(text)}


async def scrape_a_switch_on_a_tcp_hsm(tmp_path: Path, **fields: object) -> dict[str, set[str]]:
    """Start a switch (settings ``fields`` on top) whose HSM is ``hsm-sim`` over TCP,
    scrape its ``/metrics`` once, stop both: metric family → sample names."""
    hsm = await start_hsm_server(host="127.0.0.1", port=0, metrics_port=0)
    settings = switch_settings(
        tmp_path,
        hsm_url=f"tcp://127.0.0.1:{hsm.port}?connections=2",
        metrics_enabled=True,
        metrics_host="127.0.0.1",
        metrics_port=0,
        **fields,
    )
    try:
        async with AsyncExitStack() as stack:
            switch = await start_switch(settings, stack)
            return await asyncio.to_thread(scrape, switch.metrics_port)
    finally:
        await hsm.close()


async def test_every_readme_hsm_metric_is_exported_by_the_switch(tmp_path: Path) -> None:
    listed = readme_hsm_metrics()
    assert {"posp_hsm_calls_total", "posp_hsm_in_flight", "posp_hsm_reconnects_total"} <= listed
    families = await scrape_a_switch_on_a_tcp_hsm(tmp_path)
    samples = set().union(*families.values())
    for name in sorted(listed):
        if name == "posp_hsm_seconds":  # a histogram: its family is there before any call
            assert name in families, name
        else:
            assert name in samples, f"{name} listed in the README but not exported"
    # pre-initialised: outage errors of every command at 0 before anything failed
    assert "posp_hsm_errors_total" in samples
