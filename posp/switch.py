"""The assembled switch: settings → store, HSM client, network link, metrics,
pipeline, terminal server.

``Switch(settings)`` owns what it opens; collaborators passed in (a store, an
HSM client, a registry) are used but not closed, so tests can share them.
``start()`` brings the parts up in dependency order and ``stop()`` takes them
down in reverse: stop accepting and drain terminals first, then the network
link, HSM and store.  ``port`` is the bound terminal port (port 0 in the
settings picks a free one).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from posp.errors import PospError
from posp.exposition import ExpositionServer
from posp.hsm import open_hsm_client
from posp.hsm.api import HsmClient
from posp.keys import KeyService
from posp.log import get_logger
from posp.loop import loop_name
from posp.metrics import SwitchMetrics, instrument_hsm, instrument_store
from posp.network.ids import IdAllocator
from posp.pipeline.context import Services
from posp.pipeline.engine import Pipeline
from posp.pipeline.recovery import InDoubtResolver
from posp.pipeline.risk import RiskCapsFromTms, RiskService, open_risk, purge_counters
from posp.pipeline.routes import ROUTES
from posp.readiness import LoopHealth, switch_probes
from posp.server import TerminalServer
from posp.settings import Settings
from posp.store import open_store
from posp.store.api import Store
from posp.store.ic import SqlIcStore
from posp.store.sql_store import SqlStore
from posp.store.tms import SqlTmsStore
from posp.tls import certificate_expiry, client_context, server_context
from posp.tms.service import TerminalManagement

_log = get_logger("posp.switch")


def hsm_url_with_timeout(url: str, timeout_s: float) -> str:
    """``url`` with ``timeout_s`` added for a TCP HSM that does not name one."""
    if not url.startswith("tcp://") or "timeout_s=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}timeout_s={timeout_s}"


def warn_if_lab_keys(settings: Settings, hsm: HsmClient) -> None:
    """Log a WARNING when keys are held in this process (in-process HSM) or a zone
    key is a published TEST key: both are for labs only."""
    in_process = bool(getattr(hsm, "holds_keys_in_process", False))  # test doubles lack it
    test_zone_keys = settings.network_enabled and settings.network.uses_test_zone_keys
    if in_process or test_zone_keys:
        _log.warning(
            "lab keys: with an in-process HSM or TEST zone keys, keys are held in the switch"
            " process (or published); this is for labs only, never production",
            in_process_hsm=in_process,
            test_zone_values=test_zone_keys,  # not "..._keys": the log would mask it
            hint="use hsm_url = tcp://<hsm> and your own zone keys ([network] zmk_lmk ...)",
        )


def terminal_management(store: Store | None, settings: Settings) -> TerminalManagement | None:
    """Terminal management over the SQL store's TMS and IC tables (None for another store)."""
    if not isinstance(store, SqlStore):
        return None
    return TerminalManagement(
        SqlTmsStore(store), SqlIcStore(store), max_age_s=settings.tms.view_max_age_s
    )


class Switch:
    """One switch instance (any number may share a PostgreSQL store)."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        store: Store | None = None,
        hsm: HsmClient | None = None,
        link: Any = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = SwitchMetrics(self.registry)
        self._given_store = store
        self._given_hsm = hsm
        self._given_link = link
        self.risk: RiskService | None = None  # the risk rules (their holder reloads on SIGHUP)
        self._owned: list[Any] = []  # closed in reverse order at stop()
        self.store: Store | None = None
        self.hsm: HsmClient | None = None
        self.link: Any = None
        self.pipeline: Pipeline | None = None
        self.recovery: InDoubtResolver | None = None
        self.server: TerminalServer | None = None
        self._metrics_server: ExpositionServer | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._raw_store: Store | None = None
        self.tms: TerminalManagement | None = None
        self._purger: asyncio.Task[None] | None = None  # expired risk counters

    @property
    def port(self) -> int:
        return self.server.port if self.server is not None else 0

    @property
    def metrics_port(self) -> int:
        return self._metrics_server.port if self._metrics_server is not None else 0

    async def _open_store(self) -> Store:
        if self._given_store is not None:
            return self._given_store
        # The SQLite store creates its own folder (0700) and file (0600).
        store = open_store(self.settings.store_url, node_id=f"{self.settings.node_id:02d}")
        await store.open()
        self._owned.append(store)
        return store

    async def _open_hsm(self) -> HsmClient:
        if self._given_hsm is not None:
            return self._given_hsm
        tls = self.settings.hsm_tls
        client = open_hsm_client(
            hsm_url_with_timeout(self.settings.hsm_url, self.settings.hsm_timeout_s),
            registry=self.registry,
            ssl_context=client_context(tls, "hsm_tls"),
            server_name=tls.server_name,
        )
        self._owned.append(client)
        await client.start()
        return client

    async def _open_link(self, hsm: HsmClient, ids: IdAllocator) -> Any:
        if self._given_link is not None or not self.settings.network_enabled:
            return self._given_link
        from posp.network.link import NetworkLink

        link = NetworkLink(self.settings.network, hsm, ids, registry=self.registry)
        self._owned.append(link)
        await link.start()
        return link

    async def _open_saf(self, store: Store, link: Any) -> Any:
        """The store-and-forward of reversals (0420 until 0430), also for what an
        earlier run left queued; none without a network link."""
        if link is None:
            return None
        from posp.network.saf import SafForwarder

        saf = SafForwarder(store, link)
        self._owned.append(saf)  # closed before the link (reverse order)
        await saf.start()
        return saf

    def _terminal_tls(self) -> ssl.SSLContext | None:
        """The terminal listener's TLS context, and its certificate's expiry as
        ``posp_tls_certificate_expiry_timestamp_seconds`` (alerts warn before it)."""
        tls = self.settings.tls
        context = server_context(tls, "tls")
        if context is not None and tls.cert_file is not None:
            expiry = certificate_expiry(tls.cert_file)
            Gauge(
                "posp_tls_certificate_expiry_timestamp_seconds",
                "notAfter of the TLS certificate a listener presents (Unix time)",
                ["listener"],
                registry=self.registry,
            ).labels("terminal").set(expiry.timestamp())
        return context

    async def _start_recovery(self, services: Services) -> None:
        """The in-doubt sweeper: what a dead switch (or HSM) left unresolved, at
        start and then every ``recovery.sweep_interval_s``."""
        self.recovery = InDoubtResolver(services)
        self._owned.append(self.recovery)  # closed before the SAF forwarder and the link
        await self.recovery.start()

    async def start(self) -> None:
        """Open store, HSM, network link; start the terminal listener and metrics."""
        settings = self.settings
        if settings.uses_test_pan_hash_key:
            _log.warning("pan_hash_key is the public TEST value; set POSP_PAN_HASH_KEY")
        self._raw_store = await self._open_store()
        self.risk = open_risk(settings, self._raw_store, self.registry)
        store = instrument_store(self._raw_store, self.metrics)
        raw_hsm = await self._open_hsm()
        warn_if_lab_keys(settings, raw_hsm)
        hsm = instrument_hsm(raw_hsm, self.metrics)
        ids = IdAllocator(store, settings.node_id)
        self.store, self.hsm = store, hsm
        self.link = await self._open_link(hsm, ids)
        saf = await self._open_saf(store, self.link)
        services = Services(
            settings,
            store,
            hsm,
            KeyService(hsm),
            ids,
            self.metrics,
            link=self.link,
            saf=saf,
            risk=self.risk,
        )
        services.tms = self.tms = terminal_management(self._raw_store, settings)
        if self.risk is not None and self.tms is not None:
            self.risk.tms_caps = RiskCapsFromTms(self.tms)  # the rules read the same caps
        self.pipeline = Pipeline(services)
        await self._start_recovery(services)
        self.server = TerminalServer(self.pipeline, settings.limits, self.metrics)
        await self.server.start(
            settings.listen_host,
            settings.terminal_port,
            reuse_port=settings.reuse_port,
            ssl_context=self._terminal_tls(),
        )
        if settings.metrics_enabled:
            self._start_metrics_server()
        self._refresher = asyncio.create_task(self._refresh_signed_in(), name="signed-in-gauge")
        purge_s = settings.risk.purge_interval_s
        if self.risk is not None and purge_s > 0:
            self._purger = asyncio.create_task(
                purge_counters(self.risk, services, purge_s), name="risk-counter-purge"
            )
        _log.info(
            "switch started",
            port=self.port,
            node_id=settings.node_id,
            metrics_port=self.metrics_port,
            event_loop=loop_name(),
        )

    def _start_metrics_server(self) -> None:
        """``/metrics``, plus ``/ready`` (store, HSM, network link) and ``/live``."""
        self.metrics.preinitialise_requests(route.name for route in ROUTES.values())
        health = LoopHealth(
            asyncio.get_running_loop(), switch_probes(self.store, self.hsm, self.link)
        )
        settings = self.settings
        self._metrics_server = ExpositionServer(
            self.registry, settings.metrics_host, settings.metrics_port, health.routes()
        )
        self._metrics_server.start()

    async def _refresh_signed_in(self) -> None:
        """Keep posp_signed_in_terminals current (a store query every few seconds)."""
        assert self.store is not None
        lifetime = dt.timedelta(seconds=self.settings.working_key_lifetime_s)
        while True:
            try:
                since = dt.datetime.now(dt.UTC) - lifetime
                self.metrics.signed_in_terminals.set(await self.store.count_signed_in(since))
            except PospError as exc:
                _log.warning("signed-in count failed", error_type=type(exc).__name__)
            await asyncio.sleep(self.settings.signed_in_refresh_s)

    async def stop(self) -> None:
        """Drain terminals, then close link, HSM and store (those this switch opened)."""
        if self.server is not None:
            await self.server.stop(self.settings.limits.shutdown_drain_s)
        if self.pipeline is not None:
            await self.pipeline.drain()  # reversals of approvals nobody received
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None
        for part in reversed(self._owned):
            try:
                await part.close()
            except Exception as exc:  # one failing part must not keep the others open
                _log.warning(
                    "close failed", part=type(part).__name__, error_type=type(exc).__name__
                )
        self._owned.clear()
        _log.info("switch stopped")

    async def __aenter__(self) -> Switch:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
