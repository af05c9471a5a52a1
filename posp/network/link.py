"""The switch's link to the card network: persistent connections, sign-on, echo,
request/response matching, zone MAC and key exchange.

Invariants:

* Financial traffic is sent only on a connection that has signed on (0800/001 →
  0810/00); with none, :meth:`NetworkLink.send` raises ``NetworkUnavailable`` at once
  (the terminal gets 91 without waiting).
* Every request has a deadline; a response is matched by (F11, F7, F32) wherever it
  arrives; a response matching nothing is logged and counted, never silently dropped.
* A request whose connection breaks before its answer fails with ``NetworkTimeout``
  (the outcome is unknown, so the switch reverses it), as does a response whose MAC
  does not verify (:class:`ResponseMacInvalid`).
* Zone keys live in :class:`~posp.network.keyring.ZoneKey` rings: after a key
  exchange the new key is used at once and the old one still verifies for
  ``key_grace_s``.  Keys are only ever held under the LMK.
* Each connection is owned by one supervisor task that reconnects with exponential
  backoff and full jitter (``posp.backoff``); :meth:`close` cancels them and fails pending requests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry

from posp.backoff import Backoff
from posp.errors import DecodeError, NetworkTimeout, NetworkUnavailable
from posp.hsm.api import HsmClient
from posp.iso8583 import EncodedNetworkMessage, Message, NetworkFrame, NetworkHeader
from posp.iso8583.message import FieldValue
from posp.log import get_logger
from posp.network import zone
from posp.network.ids import IdAllocator
from posp.network.keyring import ZoneKey
from posp.network.mapping import ZERO_IDS
from posp.network.metrics import LinkMetrics
from posp.network.settings import NetworkLinkSettings
from posp.network.transport import FrameProtocol

__all__ = [
    "EarlyMac",
    "NetworkLink",
    "NetworkLinkSettings",
    "ResponseMacInvalid",
    "ResponseUnverified",
]

log = get_logger("posp.network")
MatchKey = tuple[str, str, str]
_KEY_NAMES: Final = {zone.KEY_KIND_ZPK: "zpk", zone.KEY_KIND_ZAK: "zak"}
#: Fields the link fills in every request it sends (``_complete_fields``).
_LINK_IDS: Final = (7, 11, 32, 33)


@dataclass(frozen=True, slots=True)
class EarlyMac:
    """A request's F128 computed ahead of sending (``NetworkLink.premac``): the
    ids the link gave it, the MAB it covers and the ZAK it was made under.
    ``send(..., early=...)`` uses it only when the request it finally sends has
    the same MAB and the ZAK is still current; otherwise it MACs again.  Either
    way the request sent takes over the texts of the fields it holds unchanged
    from ``encoded`` (the early request as MACed, a copy no caller holds)."""

    ids: dict[int, FieldValue] = field(repr=False)  # F7, F11, F32, F33 as the link set them
    mab: bytes = field(repr=False)  # holds F2: never shown
    mac: bytes = field(repr=False)
    zak: str = field(repr=False)
    encoded: EncodedNetworkMessage | None = field(default=None, repr=False, compare=False)


class ResponseMacInvalid(NetworkTimeout):
    """The network's response failed MAC verification: treated as no answer (98 and a
    reversal), because its content cannot be trusted."""


class ResponseUnverified(NetworkTimeout):
    """The network answered but the answer could not be checked (the HSM failed on its
    MAC, or taking it in failed): as no answer, 98 and a reversal."""


class NetworkLink:
    """Client side of the network link; see the module docstring for the invariants."""

    def __init__(
        self,
        settings: NetworkLinkSettings,
        hsm: HsmClient,
        ids: IdAllocator,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self._hsm = hsm
        self._ids = ids
        self.metrics = LinkMetrics(registry if registry is not None else CollectorRegistry())
        self.zpk = ZoneKey(settings.zpk_lmk, settings.key_grace_s)
        self.zak = ZoneKey(settings.zak_lmk, settings.key_grace_s)
        self._header = NetworkHeader(settings.destination_id, settings.source_id)
        self._pending: dict[MatchKey, tuple[asyncio.Future[NetworkFrame], FrameProtocol]] = {}
        self.early_macs_used = 0  # requests sent with a MAC computed ahead (premac)
        self._signed_on: list[FrameProtocol] = []
        self._round_robin = itertools.count()
        self._supervisors: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._first_sign_on = asyncio.Event()
        self._on_up: list[Callable[[], None]] = []
        self._closing = False

    # --- public API --------------------------------------------------------
    @property
    def signed_on(self) -> bool:
        return bool(self._signed_on)

    def when_up(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time the link goes from no signed-on connection to
        one (the SAF forwarder sends what waited for it at once)."""
        self._on_up.append(callback)

    @property
    def zpk_lmk(self) -> str:
        """The current ZPK under the LMK: the destination key of PIN translation."""
        return self.zpk.current

    @property
    def zak_lmk(self) -> str:
        return self.zak.current

    async def start(self) -> None:
        """Start one supervisor per connection and wait (up to the connect timeout) for
        the first sign-on.  A network that is down is not an error: the supervisors keep
        retrying and :meth:`send` answers ``NetworkUnavailable`` meanwhile."""
        for index in range(self.settings.connections):
            task = asyncio.create_task(self._supervise(index), name=f"network-link-{index}")
            self._supervisors.append(task)
        try:
            await asyncio.wait_for(self._first_sign_on.wait(), self.settings.connect_timeout_s)
        except TimeoutError:
            log.warning("network_not_signed_on", host=self.settings.host, port=self.settings.port)

    async def close(self) -> None:
        self._closing = True
        for task in [*self._supervisors, *self._background]:
            task.cancel()
        await asyncio.gather(*self._supervisors, *self._background, return_exceptions=True)
        self._supervisors.clear()
        for future, _ in self._pending.values():
            if not future.done():
                # Sent and unanswered: the caller must treat it as no answer.
                future.set_exception(NetworkTimeout("network link closed with a request in flight"))
        self._pending.clear()
        self._set_signed_on([])

    async def send(
        self,
        request: Message,
        *,
        timeout_s: float | None = None,
        on_arrival: Callable[[Message], None] | None = None,
        early: EarlyMac | None = None,
    ) -> Message:
        """Send a request and return its verified response.

        Fills F7, F11, F32, F33 when absent (in place, so the caller can journal the
        network STAN and F7 and later build a reversal), completes F90's institution ids
        when zero, and sets F128.  Raises NetworkUnavailable / NetworkTimeout.
        ``on_arrival(response)`` is called as soon as the response arrives, BEFORE its
        MAC is verified, so the caller can start work that runs alongside the check
        (it must be undone if ResponseMacInvalid follows).  ``early``: a MAC computed
        ahead by ``premac`` for this request (its ids are taken over)."""
        if not self._signed_on:
            self.metrics.requests.inc((request.mti, "unavailable"))
            raise NetworkUnavailable("network link not signed on")
        if early is not None:
            request.fields.update(early.ids)
        return await self._exchange(self._pick_connection(), request, timeout_s, on_arrival, early)

    async def premac(self, request: Message) -> EarlyMac:
        """Give ``request`` its ids (F7, F11, F32, F33) and compute its F128 now, so
        the MAC can go to the HSM together with other work; ``send(request2,
        early=...)`` reuses it when request2's MAB is the same (fields outside the
        MAB — PIN block, tracks, RRN — may be added in between)."""
        self._complete_fields(request, await self._ids.next_stan() if 11 not in request else "")
        encoded = EncodedNetworkMessage(request.copy())  # the caller may change request
        zak = self.zak.current
        mab = encoded.mab()
        mac = await zone.zone_mac(self._hsm, zak, mab)
        ids: dict[int, FieldValue] = {
            n: request.fields[n] for n in _LINK_IDS if n in request.fields
        }
        return EarlyMac(ids, mab, mac, zak, encoded)

    async def request_key(self, kind: str) -> bool:
        """Ask the network for a new ZPK (``"1"``) or ZAK (``"2"``) with 0800/101 and no
        F48, import the key it returns and switch to it.  True on success."""
        request = zone.management_request(zone.NMI_KEY_EXCHANGE)
        request[53] = kind + "0" * 15
        request[100] = self.settings.receiving_id
        response = await self.send(request)
        offer = zone.parse_offer(response)
        result = "failed"
        if zone.response_code_ok(response) and offer is not None and offer.kind == kind:
            try:
                self._ring(kind).install(
                    await zone.import_offer(self._hsm, self.settings.zmk_lmk, offer)
                )
                result = "ok"
            except Exception as exc:  # any import failure = failed exchange
                log.warning("key_import_failed", key=_KEY_NAMES[kind], error=type(exc).__name__)
        self.metrics.key_exchanges.labels(_KEY_NAMES[kind], "switch", result).inc()
        return result == "ok"

    # --- request / response -------------------------------------------------
    def _pick_connection(self) -> FrameProtocol:
        return self._signed_on[next(self._round_robin) % len(self._signed_on)]

    def _complete_fields(self, request: Message, stan: str) -> None:
        fields = request.fields
        if 7 not in fields:
            fields[7] = zone.transmission_time(self.settings.tz_offset_hours)
        if 11 not in fields:
            fields[11] = stan
        fields.setdefault(32, self.settings.acquirer_id)
        fields.setdefault(33, self.settings.forwarding_id)
        f90 = fields.get(90)
        if isinstance(f90, str) and len(f90) == 42 and f90.endswith(ZERO_IDS):
            own = self.settings.acquirer_id.zfill(11) + self.settings.forwarding_id.zfill(11)
            fields[90] = f90[:20] + own

    async def _exchange(
        self,
        conn: FrameProtocol,
        request: Message,
        timeout_s: float | None,
        on_arrival: Callable[[Message], None] | None = None,
        early: EarlyMac | None = None,
    ) -> Message:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (timeout_s if timeout_s is not None else self.settings.timeout_s)
        self._complete_fields(request, await self._ids.next_stan() if 11 not in request else "")
        # Each field encoded once for MAB and frame; those unchanged since the early
        # MAC not even that.
        encoded = EncodedNetworkMessage(request, reuse=None if early is None else early.encoded)
        if zone.needs_mac(request):
            if early is not None and early.zak == self.zak.current and early.mab == encoded.mab():
                encoded.set(zone.MAC_FIELD, early.mac)
                self.early_macs_used += 1
            else:
                await zone.mac_encoded(self._hsm, self.zak.current, encoded)
        key = (request.text(11), request.text(7), request.text(32))
        future: asyncio.Future[NetworkFrame] = loop.create_future()
        self._pending[key] = (future, conn)
        # One timer per request that fails the future at the deadline: lighter than
        # asyncio.wait_for, which wraps the wait in more futures and callbacks.
        timer = loop.call_at(deadline, _expire, future)
        try:
            if not conn.send_body(encoded.body(self._header)):
                raise NetworkUnavailable("network connection closed")
            answer = await future
        except TimeoutError:
            self.metrics.requests.inc((request.mti, "timeout"))
            raise NetworkTimeout(f"no {request.mti} answer within the deadline") from None
        finally:
            timer.cancel()
            self._pending.pop(key, None)
        self.metrics.latency.observe(loop.time() - started)
        response = answer.message
        # From here on the request is on the wire: whatever fails is "no answer"
        # (a NetworkTimeout), never "not sent", so the caller reverses it.
        try:
            if on_arrival is not None:
                on_arrival(response)  # reads the response, never changes it
            mac_ok = (
                not zone.needs_mac(response)
                # The MAB from the bytes as they arrived: nothing encoded again.
                or await zone.verify_encoded(
                    self._hsm, self.zak, EncodedNetworkMessage.received(answer)
                )
                is not None
            )
        except Exception as exc:
            self.metrics.requests.inc((request.mti, "unverified"))
            log.warning("network_response_unverified", mti=response.mti, error=type(exc).__name__)
            raise ResponseUnverified(f"{response.mti} answer could not be checked") from exc
        if not mac_ok:
            self.metrics.mac_failures.inc()
            self.metrics.requests.inc((request.mti, "mac_failed"))
            log.warning("network_response_mac_failed", mti=response.mti)
            raise ResponseMacInvalid(f"{response.mti} MAC did not verify")
        self.metrics.requests.inc((request.mti, str(response.get(39) or "none")))
        return response

    def _on_frame(self, conn: FrameProtocol, frame: NetworkFrame) -> None:
        message = frame.message
        if message.mti[2] in "13":  # x1x0 / x3x0: a response
            self._on_response(frame)
            return
        task = asyncio.create_task(self._on_network_request(conn, frame))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_response(self, frame: NetworkFrame) -> None:
        message = frame.message
        key = (str(message.get(11)), str(message.get(7)), str(message.get(32)))
        entry = self._pending.pop(key, None)
        if entry is None or entry[0].done():
            self.metrics.unmatched.inc()
            log.warning("network_unmatched_response", mti=message.mti, stan=key[0])
            return
        entry[0].set_result(frame)

    def _on_bad_frame(self, conn: FrameProtocol, exc: DecodeError) -> None:
        self.metrics.bad_frames.inc()
        log.warning("network_bad_frame", peer=conn.peer, error=str(exc))

    # --- requests from the network -----------------------------------------
    async def _on_network_request(self, conn: FrameProtocol, frame: NetworkFrame) -> None:
        request = frame.message
        response = zone.echoed_response(request, zone.MANAGEMENT_ECHOED)
        if request.mti != "0800":
            response[39] = "12"
        elif request.get(70) == zone.NMI_KEY_EXCHANGE:
            response[39] = await self._accept_key(frame)
        else:
            response[39] = "00"
        if zone.needs_mac(response):
            await zone.mac_message(self._hsm, self.zak.current, response)
        conn.send(NetworkFrame(frame.header.swapped(), response))

    async def _accept_key(self, frame: NetworkFrame) -> str:
        """Verify the 0800/101's MAC, import the offered key, switch to it."""
        request = frame.message
        kind = zone.key_kind(request)
        name = _KEY_NAMES.get(kind or "", "unknown")
        received = EncodedNetworkMessage.received(frame)
        if await zone.verify_encoded(self._hsm, self.zak, received) is None:
            self.metrics.mac_failures.inc()
            self.metrics.key_exchanges.labels(name, "network", "mac_failed").inc()
            return "A0"
        code, offer, key_lmk = await zone.key_exchange_answer_code(
            self._hsm, self.settings.zmk_lmk, request
        )
        result = "ok" if code == "00" else code
        if offer is not None and key_lmk is not None:
            ring = self._ring(offer.kind)
            # The network offers a new key on every connection; the same key
            # arriving again on this switch's second connection is a repeat.
            if key_lmk == ring.current:
                result = "repeat"
            ring.install(key_lmk)
        self.metrics.key_exchanges.labels(name, "network", result).inc()
        log.info("network_key_exchange", key=name, response_code=code)
        return code

    def _ring(self, kind: str) -> ZoneKey:
        return self.zpk if kind == zone.KEY_KIND_ZPK else self.zak

    # --- connection supervision ----------------------------------------------
    def _set_signed_on(self, conns: list[FrameProtocol]) -> None:
        was_up = bool(self._signed_on)
        self._signed_on = conns
        self.metrics.connections_signed_on.set(len(conns))
        self.metrics.link_up.set(1 if conns else 0)
        if conns:
            self._first_sign_on.set()
            if not was_up:
                for callback in self._on_up:
                    try:
                        callback()
                    except Exception as exc:  # never the link's supervision
                        log.error("link_up_callback_failed", error=type(exc).__name__)

    async def _supervise(self, index: int) -> None:
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        while not self._closing:
            conn = await self._connect()
            # close() may have been called meanwhile (on Python 3.11 a wait_for that
            # completes as it is cancelled swallows the cancellation): never sign on then.
            if conn is not None and self._closing:
                conn.close()
                return
            if conn is not None:
                try:
                    if await self._sign_on(conn) and not self._closing:
                        backoff.reset()
                        self._set_signed_on([*self._signed_on, conn])
                        log.info("network_signed_on", connection=index)
                        await self._keep_alive(conn)
                except Exception as exc:  # e.g. StoreError from the STAN: never end the loop
                    log.error("network_link_error", connection=index, error=type(exc).__name__)
                finally:
                    self._drop(conn)
            self.metrics.reconnects.inc()
            await asyncio.sleep(backoff.next_s())

    async def _connect(self) -> FrameProtocol | None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: FrameProtocol(
                        self._on_frame,
                        self._on_bad_frame,
                        max_frame_bytes=self.settings.max_frame_bytes,
                    ),
                    self.settings.host,
                    self.settings.port,
                ),
                self.settings.connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            log.debug("network_connect_failed", error=type(exc).__name__)
            return None
        return protocol

    async def _sign_on(self, conn: FrameProtocol) -> bool:
        try:
            response = await self._exchange(conn, zone.management_request(zone.NMI_SIGN_ON), None)
        except (NetworkTimeout, NetworkUnavailable):
            return False
        return zone.response_code_ok(response)

    async def _keep_alive(self, conn: FrameProtocol) -> None:
        """Echo after ``echo_idle_s`` without traffic; return when the connection drops
        or an echo goes unanswered."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            idle_left_s = conn.last_activity + self.settings.echo_idle_s - loop.time()
            if idle_left_s > 0:
                try:
                    await asyncio.wait_for(conn.closed.wait(), idle_left_s)
                    return
                except TimeoutError:
                    continue
            try:
                response = await self._exchange(conn, zone.management_request(zone.NMI_ECHO), None)
            except (NetworkTimeout, NetworkUnavailable):
                log.warning("network_echo_failed")
                return
            if not zone.response_code_ok(response):
                return

    def _drop(self, conn: FrameProtocol) -> None:
        """Forget a connection and fail what was in flight on it."""
        if conn in self._signed_on:
            self._set_signed_on([c for c in self._signed_on if c is not conn])
        conn.close()
        for key, (future, owner) in list(self._pending.items()):
            if owner is conn and not future.done():
                future.set_exception(
                    NetworkTimeout("network connection lost with a request in flight")
                )
                del self._pending[key]


def _expire(future: asyncio.Future[NetworkFrame]) -> None:
    """The deadline passed without an answer."""
    if not future.done():
        future.set_exception(TimeoutError())
