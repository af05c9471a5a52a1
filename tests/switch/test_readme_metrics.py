"""The README's Monitoring section and the switch's /metrics agree both ways: every
metric the README names is exported by a switch started as `posp serve` starts it
(TCP HSM, network link up), and every `posp_` metric it exports is named there
(issue 14 item 2).  Names the README gives "with TLS" are checked by tests/ops/test_tls.py."""

from __future__ import annotations

import re
from pathlib import Path

from issuer_sim.app import start_issuer
from issuer_sim.settings import IssuerSettings
from posp.lab.inprocess_hsm import inprocess_hsm_client
from tests.switch.test_hsm_metrics import scrape_a_switch_on_a_tcp_hsm

README = Path(__file__).resolve().parents[2] / "README.md"
ONLY_WITH_TLS = {"posp_tls_certificate_expiry_timestamp_seconds"}


def readme_switch_metrics() -> set[str]:
    """Family names (``posp_`` + name, without a counter's ``_total``) the README lists
    for the switch: the Monitoring section up to the HSM simulator's list."""
    section = README.read_text(encoding="utf-8").split("## Monitoring", 1)[1]
    switch_part = section.split("`hsm-sim` exports", 1)[0]
    names = re.findall(r"`([a-z_]+)(?:\{[a-z_,=\"0-9]*\})?`", switch_part)
    return {
        f"posp_{n.removesuffix('_total')}" for n in names if not n.startswith(("process", "posp_"))
    }


def family(name: str) -> str:
    return name.removesuffix("_created").removesuffix("_total")


async def test_the_readme_names_exactly_the_metrics_the_switch_exports(tmp_path: Path) -> None:
    listed = readme_switch_metrics()
    assert {"posp_requests", "posp_hsm_calls", "posp_network_saf_depth"} <= listed
    issuer = await start_issuer(
        IssuerSettings.model_validate({"port": 0}), hsm=inprocess_hsm_client()
    )
    try:
        families = await scrape_a_switch_on_a_tcp_hsm(
            tmp_path, network_enabled=True, network={"port": issuer.port}
        )
    finally:
        await issuer.close()
    exported = {family(name) for name in families if name.startswith("posp_")}
    assert sorted(listed - ONLY_WITH_TLS - exported) == [], "listed in the README, not exported"
    assert sorted(exported - listed) == [], "exported, not listed in the README"
    assert {"process_resident_memory_bytes", "process_open_fds"} <= set(families)
