"""Prometheus metrics of the switch, against an injected registry.

Label values come from closed sets only (route names, response codes, HSM
command names, exception class names, store method names, shed reasons):
never a terminal id, PAN, trace or RRN.

============================  =========  =======================  ===============================
metric                        type       labels                   meaning
============================  =========  =======================  ===============================
posp_requests_total           counter    txn_type, response_code  requests answered
posp_request_seconds          histogram  txn_type                 frame arrival to answer
posp_connections              gauge      -                        open terminal connections
posp_in_flight                gauge      -                        requests being processed
posp_shed_total               counter    reason                   refused by a limit: connections,
                                                                  in_flight_connection,
                                                                  in_flight_global, deadline,
                                                                  shutdown
posp_frames_rejected_total    counter    reason                   connections closed: garbage,
                                                                  oversized, idle
posp_hsm_seconds              histogram  command                  HSM call latency (method name)
posp_hsm_errors_total         counter    command, error           HSM failures (exception class)
posp_store_seconds            histogram  operation                store call latency (method)
posp_signed_in_terminals      gauge      -                        terminals with unexpired keys
                                                                  (refreshed periodically)
posp_build_info               info       version, python          the running build
process_*                     (various)  -                        RSS, CPU seconds, open and max
                                                                  fds, start time (Linux /proc)
============================  =========  =======================  ===============================

The in-doubt sweeper (:mod:`posp.pipeline.recovery`) records once per pass
(the interval once, at start):

* ``posp_recovery_sweeps_total{result}`` (counter): passes, ``ok`` or
  ``failed`` (logged; the next pass tries again);
* ``posp_recovery_last_success_timestamp_seconds`` (gauge): Unix time the last
  pass ended without failing;
* ``posp_recovery_resolved_total{outcome}`` (counter): what the passes
  resolved, one of :data:`RECOVERY_OUTCOMES` (``timed_out``: an entry a dead
  switch left pending, moved to timed out, reversed upstream if it may have
  reached the network);
* ``posp_recovery_unresolved_total`` (counter): entries, reservations and kept
  0400s whose resolution failed (logged; tried again next pass, except a
  timed-out entry's risk hold: see ``InDoubtResolver._time_out``);
* ``posp_recovery_in_doubt_entries`` (gauge): pending entries past the in-doubt
  cut-off that the last pass found (at most 100 a pass);
* ``posp_recovery_kept_reversals_waiting`` (gauge): kept 0400s the HSM could
  not check at the last pass;
* ``posp_recovery_sweep_interval_seconds`` (gauge): ``recovery.sweep_interval_s``
  (the alert on passes that stop finishing scales with it);
* ``posp_journal_pending_entries`` (gauge): journal entries pending after the
  last pass, in flight or in doubt;
* ``posp_journal_open_rows`` (gauge): the rows of the list they are read from:
  on PostgreSQL ``journal_open`` (migration 0037), which also holds entries that
  ended since the pass's cleanup, and grows if that cleanup keeps failing; on
  SQLite the pending entries.

What a failing pass resolved before it failed is counted; the gauges keep
what the last good pass set (0 before the first), and the journal's two keep
their last count when a good pass could not count.  ``recovery_sweeps_total`` and
``recovery_resolved_total`` start at 0 for each label value.

Labelled counters whose label values are a closed set known up front (shed and
reject reasons; ``requests_total`` for every route with response code 00) are
pre-initialised to 0, so dashboards show 0 instead of "No data".

txn_type is a route name (sign_in, purchase, ...) or ``unrouted``.

The HSM client and the store are wrapped in timing proxies
(:func:`instrument_hsm`, :func:`instrument_store`) so no caller has to
remember to time its calls.  The per-request instruments (requests, their
latency, HSM and store latency) are :mod:`posp.tally` instruments: plain
numbers turned into metric families at scrape time, because a
``prometheus_client`` observation costs about a microsecond and a card
transaction makes a dozen.  ``posp_in_flight`` is read from the terminal
server at scrape time (``track_in_flight``).
"""

from __future__ import annotations

import functools
import inspect
import platform
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, ProcessCollector

from posp.errors import HsmError, HsmTimeout, HsmUnavailable
from posp.hsm.api import HsmClient
from posp.tally import TallyCounter, TallyHistogram, TallySeries
from posp.version import posp_version

if TYPE_CHECKING:
    from posp.store.api import Store

_LATENCY_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SHED_REASONS: Final = (
    "connections",
    "in_flight_connection",
    "in_flight_global",
    "deadline",
    "shutdown",
)
REJECT_REASONS: Final = ("garbage", "oversized", "idle")


#: What an in-doubt sweep resolves (``posp_recovery_resolved_total{outcome}``).
RECOVERY_OUTCOMES: Final = (
    "timed_out",
    "reversal_applied",
    "reversal_refused",
    "reversal_closed",
    "other_closed",
    "reservation_released",
)


#: The HSM operations (the client's public coroutine methods): posp_hsm_errors_total
#: starts at 0 for each of them with the outage errors, so panels show 0, not "No data".
HSM_COMMANDS: Final = tuple(
    name
    for name, _ in inspect.getmembers(HsmClient, inspect.iscoroutinefunction)
    if not name.startswith("_") and name not in ("start", "close")
)
_PREINITIALISED_HSM_ERRORS: Final = (HsmTimeout.__name__, HsmUnavailable.__name__)


class SwitchMetrics:
    """Every metric of the switch, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = TallyCounter(
            "posp_requests", "Requests answered", ["txn_type", "response_code"], registry=r
        )
        self.request_seconds = TallyHistogram(
            "posp_request_seconds",
            "Time from frame to answer",
            ["txn_type"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.connections = Gauge("posp_connections", "Open terminal connections", registry=r)
        self.in_flight = Gauge("posp_in_flight", "Requests being processed", registry=r)
        self.shed = Counter(
            "posp_shed", "Connections or requests refused by a limit", ["reason"], registry=r
        )
        self.frames_rejected = Counter(
            "posp_frames_rejected", "Connections closed for bad input", ["reason"], registry=r
        )
        self.hsm_seconds = TallyHistogram(
            "posp_hsm_seconds",
            "HSM call latency",
            ["command"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.hsm_errors = Counter(
            "posp_hsm_errors", "HSM call failures", ["command", "error"], registry=r
        )
        for command in HSM_COMMANDS:
            for error in _PREINITIALISED_HSM_ERRORS:
                self.hsm_errors.labels(command, error)
        self.store_seconds = TallyHistogram(
            "posp_store_seconds",
            "Store call latency",
            ["operation"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.signed_in_terminals = Gauge(
            "posp_signed_in_terminals", "Terminals with unexpired working keys", registry=r
        )
        self._request_series: dict[str, TallySeries] = {}
        ProcessCollector(registry=r)
        Info("posp_build", "The running build", registry=r).info(
            {"version": posp_version(), "python": platform.python_version()}
        )
        for reason in SHED_REASONS:
            self.shed.labels(reason)
        for reason in REJECT_REASONS:
            self.frames_rejected.labels(reason)

        self.chip_fallbacks = Counter(
            "posp_chip_fallbacks",
            "Swipes of chip cards: allowed (60.5 = 2) or refused (45)",
            ["result"],
            registry=r,
        )
        for result in ("allowed", "refused"):
            self.chip_fallbacks.labels(result)
        #: Allowed fallbacks per terminal id (this process; not a metric label).
        self.fallbacks_by_terminal: dict[str, int] = {}

        # The in-doubt sweeper (posp.pipeline.recovery), recorded once per pass.
        self.recovery_sweeps = Counter(
            "posp_recovery_sweeps", "In-doubt sweeper passes, by result", ["result"], registry=r
        )
        for result in ("ok", "failed"):
            self.recovery_sweeps.labels(result)
        self.recovery_last_success = Gauge(
            "posp_recovery_last_success_timestamp_seconds",
            "Unix time the in-doubt sweeper's last pass ended without failing",
            registry=r,
        )
        self.recovery_resolved = Counter(
            "posp_recovery_resolved",
            "In-doubt work the sweeper resolved, by outcome",
            ["outcome"],
            registry=r,
        )
        for outcome in RECOVERY_OUTCOMES:
            self.recovery_resolved.labels(outcome)
        self.recovery_unresolved = Counter(
            "posp_recovery_unresolved",
            "Entries, reservations and kept reversals whose resolution failed (logged)",
            registry=r,
        )
        self.recovery_in_doubt = Gauge(
            "posp_recovery_in_doubt_entries",
            "Pending entries past the in-doubt cut-off the last sweep found (at most 100)",
            registry=r,
        )
        self.recovery_waiting = Gauge(
            "posp_recovery_kept_reversals_waiting",
            "Kept terminal reversals the HSM could not check at the last sweep",
            registry=r,
        )
        self.recovery_interval = Gauge(
            "posp_recovery_sweep_interval_seconds",
            "The in-doubt sweeper's interval between passes (recovery.sweep_interval_s)",
            registry=r,
        )
        self.journal_pending = Gauge(
            "posp_journal_pending_entries",
            "Journal entries pending after the last sweep: in flight or in doubt",
            registry=r,
        )
        self.journal_open_rows = Gauge(
            "posp_journal_open_rows",
            "Rows of the list of pending entries after the last sweep"
            " (PostgreSQL: journal_open; SQLite: the pending entries)",
            registry=r,
        )

    def preinitialise_requests(self, txn_types: Iterable[str]) -> None:
        """``posp_requests_total{txn_type, response_code="00"}`` at 0 for each type."""
        for txn_type in txn_types:
            self.requests.inc((txn_type, "00"), 0)

    def track_in_flight(self, read: Callable[[], int]) -> None:
        """Report ``read()`` as posp_in_flight at each scrape (no per-request update)."""
        self.in_flight.set_function(read)

    def observe_request(self, txn_type: str, response_code: str, seconds: float) -> None:
        self.requests.inc((txn_type, response_code))
        series = self._request_series.get(txn_type)
        if series is None:
            series = self._request_series[txn_type] = self.request_seconds.series((txn_type,))
        series.observe(seconds)


class _TimingProxy:
    """Wraps every coroutine method of ``target`` with a latency observation into
    the series of ``histogram`` labelled by the method's name; ``on_error`` (if
    any) also sees the method's name and what it raised."""

    def __init__(
        self,
        target: object,
        histogram: TallyHistogram,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self._target = target
        self._histogram = histogram
        self._on_error = on_error

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name.startswith("_") or not callable(attr):
            return attr
        observe = self._histogram.series((name,)).observe
        on_error = self._on_error
        clock = time.perf_counter
        call = cast("Callable[..., Awaitable[Any]]", attr)

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                result = await call(*args, **kwargs)
            except BaseException as exc:
                observe(clock() - started)
                if on_error is not None:
                    on_error(name, exc)
                raise
            observe(clock() - started)
            return result

        # Cache on the instance: __getattr__ runs only for the first call of a method.
        setattr(self, name, timed)
        return timed


def instrument_hsm(hsm: HsmClient, metrics: SwitchMetrics) -> HsmClient:
    """``hsm`` with every call timed into posp_hsm_seconds / posp_hsm_errors_total."""

    def on_error(command: str, exc: BaseException) -> None:
        if isinstance(exc, HsmError):
            metrics.hsm_errors.labels(command, type(exc).__name__).inc()

    return cast("HsmClient", _TimingProxy(hsm, metrics.hsm_seconds, on_error))


def instrument_store(store: Store, metrics: SwitchMetrics) -> Store:
    """``store`` with every call timed into posp_store_seconds."""
    return cast("Store", _TimingProxy(store, metrics.store_seconds))
