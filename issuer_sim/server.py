"""The card network simulator's TCP server: the network side of network-link.md.

Invariants:
* Every MAC'd request is verified with an acceptable ZAK before anything else; a bad
  MAC answers 39 ``A0`` without a MAC and moves no money.  A pending ZAK that verifies
  is promoted (the switch has switched to it).  The MAB is built from the request's
  field bytes as received (what ``network_mab`` would re-encode them to).
* Durable mode (``settings.durable``): an answer is sent only after the ledger change
  it reports is committed to the database file (:mod:`issuer_sim.db`).
* Every answer echoes 7, 11, 32 so the switch can match it; key exchange answers and
  financial answers carry F128.
* Key exchange: the server answers 0800/101 (importing the key in F48, or generating
  one under the ZMK when F48 is absent) and, when ``rules.key_exchange_interval_s`` >
  0, initiates it: new ZPK and ZAK are *offered* (accepted from the switch at once) and
  promoted when the switch confirms with 0810 ``00`` or is first seen using them.
* An initiated exchange is offered on *every* open connection at once: several switch
  instances (each with several connections) behave as one acquirer, and an instance
  that never heard of the new key would fail once the old one leaves its grace
  period.  The key is promoted when at least one connection answered ``00``; each
  connection's outcome is counted (``issuer_sim_key_offers_total``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from issuer_sim.authorizer import Authorizer
from issuer_sim.db import CardDb
from issuer_sim.ledger import Ledger
from issuer_sim.rules import Rules
from issuer_sim.settings import IssuerSettings
from posp.errors import DecodeError, HsmError
from posp.hsm.api import KEY_ZAK, KEY_ZPK, HsmClient
from posp.iso8583 import EncodedNetworkMessage, Message, NetworkFrame, NetworkHeader
from posp.log import get_logger
from posp.network import zone
from posp.network.keyring import ZoneKey
from posp.network.transport import FrameProtocol

log = get_logger("issuer_sim")
_KEY_TYPES = {zone.KEY_KIND_ZPK: KEY_ZPK, zone.KEY_KIND_ZAK: KEY_ZAK}
_KEY_NAMES = {zone.KEY_KIND_ZPK: "zpk", zone.KEY_KIND_ZAK: "zak"}


class IssuerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "issuer_sim_requests",
            "requests by MTI and response code (dropped = no answer)",
            ["mti", "response_code"],
            registry=registry,
        )
        self.mac_failures = Counter(
            "issuer_sim_mac_failures", "requests whose MAC did not verify", registry=registry
        )
        self.key_exchanges = Counter(
            "issuer_sim_key_exchanges",
            "key exchanges by key, initiator and result",
            ["key", "initiator", "result"],
            registry=registry,
        )
        self.key_offers = Counter(
            "issuer_sim_key_offers",
            "network-initiated key offers by key and per-connection result (ok, declined, timeout)",
            ["key", "result"],
            registry=registry,
        )


#: How long ``close`` waits for the listener's connections to finish.
CLOSE_WAIT_S = 2.0


class IssuerServer:
    """Serves the network link; see the module docstring.  Built by ``start_issuer``."""

    def __init__(
        self,
        settings: IssuerSettings,
        hsm: HsmClient,
        ledger: Ledger,
        db: CardDb,
        rules: Rules,
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.hsm = hsm
        self.ledger = ledger
        self.db = db
        self.rules = rules
        self.metrics = IssuerMetrics(registry)
        self._request_counts: dict[tuple[str, str], Counter] = {}  # (mti, code) → child
        self.zpk = ZoneKey(settings.zpk_lmk, settings.key_grace_s)
        self.zak = ZoneKey(settings.zak_lmk, settings.key_grace_s)
        self.authorizer = Authorizer(
            ledger, hsm, self.zpk, settings.pvk_lmk, rules, settings.issuer_id,
            settings.tz_offset_hours,
        )  # fmt: skip
        self.connections: set[FrameProtocol] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending: dict[tuple[str, str, str], asyncio.Future[Message]] = {}
        self._stan = itertools.count(1)
        self._switch_header = NetworkHeader("", settings.network_id)
        self._headers: dict[FrameProtocol, NetworkHeader] = {}  # per connection, last seen
        # Traffic seen, for fault tests: requests received by MTI (counted on arrival,
        # before latency or drop) and 0420s received per original-data key (F90).
        self.received: Tally[str] = Tally()
        self.reversals: Tally[str] = Tally()
        self.in_progress = 0  # requests received and not yet answered (or dropped)
        self._commit_lock = asyncio.Lock()
        self._next_commit: asyncio.Future[None] | None = None  # durable mode, not started
        self.port = 0

    # --- lifecycle -----------------------------------------------------------
    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_protocol, self.settings.host, self.settings.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._flush_loop())
        self._spawn(self._key_exchange_loop())

    def _new_protocol(self) -> FrameProtocol:
        protocol = FrameProtocol(
            self._on_frame, self._on_bad_frame, max_frame_bytes=self.settings.max_frame_bytes
        )
        self.connections = {c for c in self.connections if not c.closed.is_set()}
        self._headers = {c: h for c, h in self._headers.items() if c in self.connections}
        self.connections.add(protocol)
        return protocol

    async def close(self) -> None:
        """Stop listening, drop connections, flush the ledger, close the HSM client."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            # Bounded: a connection accepted while closing (a switch reconnecting with
            # no delay) is closed here rather than waited for (wait_closed waits for
            # every connection on recent Pythons).
            try:
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_WAIT_S)
            except TimeoutError:
                for conn in list(self.connections):
                    conn.close()
            self._server = None
        await self.db.flush(self.ledger)
        await self.db.close()
        self._flush_chip(close=True)
        await self.hsm.close()

    def _flush_chip(self, *, close: bool = False) -> None:
        """Chip cards' accepted ATCs go to the db with the ledger (issuer_sim.chipissuer)."""
        chip = self.authorizer.chip
        if chip is not None:
            chip.flush()
            if close and chip.store is not None:
                chip.store.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            try:
                await self.db.flush(self.ledger)
                self._flush_chip()
            except Exception as exc:  # keep serving; the next flush retries
                log.error("issuer_flush_failed", error=type(exc).__name__)

    async def _commit_before_answer(self) -> bool:
        """Durable mode: commit the ledger's changes before an answer leaves; False (no
        answer is sent, the acquirer times out and reverses) when the commit fails.

        Group commit: answers that arrive while a commit runs join the next one, which
        takes the dirty marks only once it starts, so it covers every change made
        before they joined (one SQLite commit for a whole burst of answers)."""
        if self._next_commit is None:
            self._next_commit = asyncio.get_running_loop().create_future()
            self._spawn(self._run_commit(self._next_commit))
        try:
            await asyncio.shield(self._next_commit)
        except Exception as exc:
            log.error("issuer_commit_failed", error=type(exc).__name__)
            return False
        return True

    async def _run_commit(self, done: asyncio.Future[None]) -> None:
        async with self._commit_lock:  # one commit at a time; the next one queues here
            self._next_commit = None  # changes from now on join a later commit
            try:
                await self.db.flush(self.ledger)
            except Exception as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

    # --- inspection (tests, posp up) ------------------------------------------
    async def balance(self, pan: str) -> int:
        """Ledger balance in minor units (holds not subtracted); KeyError if unknown."""
        return self.ledger.accounts[pan].balance_minor

    # --- frames --------------------------------------------------------------
    def _on_frame(self, conn: FrameProtocol, frame: NetworkFrame) -> None:
        answer_header = self._switch_header = self._headers[conn] = frame.header.swapped()
        message = frame.message
        if message.mti[2] in "13":
            key = (str(message.get(11)), str(message.get(7)), str(message.get(32)))
            future = self._pending.pop(key, None)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                log.warning("issuer_unmatched_response", mti=message.mti)
            return
        self.received[message.mti] += 1
        self.in_progress += 1
        task = self._spawn(self._handle(conn, frame, answer_header))
        task.add_done_callback(self._handled)

    def _handled(self, _task: asyncio.Task[Any]) -> None:
        self.in_progress -= 1

    def _on_bad_frame(self, conn: FrameProtocol, exc: DecodeError) -> None:
        log.warning("issuer_bad_frame", error=str(exc))
        self._count("????", "30")

    async def _handle(
        self, conn: FrameProtocol, frame: NetworkFrame, answer_header: NetworkHeader
    ) -> None:
        # The request's MAB comes from its fields as received; the response takes
        # over the texts of the fields it echoes, and the rest are encoded once for
        # its MAB and its frame.
        received = EncodedNetworkMessage.received(frame)
        request = frame.message
        try:
            response = await self._answer(received)
        except HsmError as exc:
            log.error("issuer_hsm_failed", error=type(exc).__name__)
            response = self._bare_response(request, "96")
        if response is None:
            self._count(request.mti, "dropped")
            return
        if self.settings.durable and not await self._commit_before_answer():
            self._count(request.mti, "dropped")
            return
        encoded = EncodedNetworkMessage(response, reuse=received)
        code = str(response.get(39))
        if code != "A0" and zone.needs_mac(response):
            await zone.mac_encoded(self.hsm, self.zak.current, encoded)
        self._count(request.mti, code)
        conn.send_body(encoded.body(answer_header))

    def _count(self, mti: str, code: str) -> None:
        """``issuer_sim_requests_total{mti, code}`` += 1 through a cached child (the
        label lookup costs more than the increment)."""
        child = self._request_counts.get((mti, code))
        if child is None:
            child = self._request_counts[mti, code] = self.metrics.requests.labels(mti, code)
        child.inc()

    async def _answer(self, received: EncodedNetworkMessage) -> Message | None:
        request = received.message
        if zone.needs_mac(request) and not await self._mac_ok(received):
            self.metrics.mac_failures.inc()
            return self._bare_response(request, "A0")
        if request.mti == "0800":
            return await self._management(request)
        if request.mti == "0420":
            original = str(request.get(90) or "")
            self.reversals[original] += 1
            # One line per 0420 (logged before the 0430 leaves): fault tests count them
            # per original across restarts of this process.  Slashes between the F90
            # parts keep the log's PAN masking off this key.
            parts = (original[:4], original[4:10], original[10:20], original[20:31], original[31:])
            log.info("issuer_reversal_received", original="/".join(parts))
            return self.authorizer.reversal_response(request)
        if request.mti == "0620":
            return self.authorizer.advice_response(request)
        if self.rules.latency_ms > 0:
            await asyncio.sleep(self.rules.latency_ms / 1000)
        return await self.authorizer.authorize(request)

    async def _mac_ok(self, received: EncodedNetworkMessage) -> bool:
        key = await zone.verify_encoded(self.hsm, self.zak, received)
        if key is not None and key == self.zak.pending:
            self.zak.promote()
        return key is not None

    @staticmethod
    def _bare_response(request: Message, code: str) -> Message:
        response = zone.echoed_response(request, zone.MANAGEMENT_ECHOED)
        response[39] = code
        return response

    # --- network management ------------------------------------------------------
    async def _management(self, request: Message) -> Message:
        if request.get(70) != zone.NMI_KEY_EXCHANGE:
            return self._bare_response(request, "00")
        kind = zone.key_kind(request)
        if kind is None:
            return self._bare_response(request, "30")
        name = _KEY_NAMES[kind]
        if 48 not in request:  # the switch asks for a new key
            response = self._bare_response(request, "00")
            generated = await self.hsm.generate_key(
                _KEY_TYPES[kind], "U", export_under=self.settings.zmk_lmk
            )
            fresh = zone.KeyOffer(kind, generated.under_wrap or "", generated.kcv)
            self._ring(kind).offer(generated.under_lmk)
            response[48] = fresh.f48()
            self.metrics.key_exchanges.labels(name, "switch", "ok").inc()
            return response
        code, offer, key_lmk = await zone.key_exchange_answer_code(
            self.hsm, self.settings.zmk_lmk, request
        )
        if offer is not None and key_lmk is not None:
            self._ring(offer.kind).install(key_lmk)
        self.metrics.key_exchanges.labels(name, "switch", "ok" if code == "00" else code).inc()
        return self._bare_response(request, code)

    def _ring(self, kind: str) -> ZoneKey:
        return self.zpk if kind == zone.KEY_KIND_ZPK else self.zak

    async def initiate_key_exchange(self, kind: str, *, timeout_s: float = 5.0) -> bool:
        """Generate a new ZPK (``"1"``) or ZAK (``"2"``) under the ZMK, offer it with
        0800/101 on every open connection and promote it when at least one answered
        00 (the old key stays valid for ``key_grace_s``).  False when no connection
        is open or none accepted."""
        name = _KEY_NAMES[kind]
        conns = [c for c in self.connections if c.is_open]
        if not conns:
            return False
        generated = await self.hsm.generate_key(
            _KEY_TYPES[kind], "U", export_under=self.settings.zmk_lmk
        )
        ring = self._ring(kind)
        ring.offer(generated.under_lmk)
        offer = zone.KeyOffer(kind, generated.under_wrap or "", generated.kcv)
        # Every offer leaves before any answer is awaited: an instance that switches
        # to the new key at once must not see the old one promoted away first.
        waits = [await self._send_offer(conn, offer) for conn in conns]
        results = await asyncio.gather(*(self._offer_result(w, timeout_s) for w in waits))
        for result in results:
            self.metrics.key_offers.labels(name, result).inc()
        ok = "ok" in results
        if ok and ring.pending == generated.under_lmk:
            ring.promote()
        overall = "ok" if ok else ("timeout" if "timeout" in results else "failed")
        self.metrics.key_exchanges.labels(name, "network", overall).inc()
        log.info(
            "issuer_key_offered", key_type=name, connections=len(conns),
            accepted=results.count("ok"), promoted=ok,
        )  # fmt: skip
        return ok

    async def _send_offer(
        self, conn: FrameProtocol, offer: zone.KeyOffer
    ) -> tuple[tuple[str, str, str], asyncio.Future[Message]]:
        """Send one 0800/101 on ``conn``; the key its answer is matched by and its future."""
        request = Message("0800", {70: zone.NMI_KEY_EXCHANGE, 53: offer.f53(), 48: offer.f48()})
        request[7] = zone.transmission_time(self.settings.tz_offset_hours)
        request[11] = f"{next(self._stan) % 999_999 + 1:06d}"
        request[32] = self.settings.network_id
        request[100] = self.settings.network_id
        await zone.mac_message(self.hsm, self.zak.current, request)
        key = (request.text(11), request.text(7), request.text(32))
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        conn.send(NetworkFrame(self._headers.get(conn, self._switch_header), request))
        return key, future

    async def _offer_result(
        self, wait: tuple[tuple[str, str, str], asyncio.Future[Message]], timeout_s: float
    ) -> str:
        """``ok``, ``declined`` (any other F39) or ``timeout`` for one offer."""
        key, future = wait
        try:
            response = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return "timeout"
        finally:
            self._pending.pop(key, None)
        return "ok" if response.get(39) == "00" else "declined"

    async def _key_exchange_loop(self) -> None:
        while True:
            interval_s = self.rules.key_exchange_interval_s
            await asyncio.sleep(interval_s if interval_s > 0 else 1.0)
            if interval_s <= 0:
                continue
            for kind in (zone.KEY_KIND_ZPK, zone.KEY_KIND_ZAK):
                try:
                    await self.initiate_key_exchange(kind)
                except HsmError as exc:
                    log.error("issuer_key_exchange_failed", error=type(exc).__name__)
