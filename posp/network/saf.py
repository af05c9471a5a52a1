"""Store-and-forward of reversals (0420) until the network confirms with 0430, and of
advices the switch sends for terminals (0620 script results, confirmed by 0630).

Invariants:
* Items live in the store (``enqueue_saf``), so a restart — or another switch
  instance on the same database — picks them up; ``due_saf`` leases what it returns.
* An item is marked delivered (never removed: one per entry, ever) only when its
  answer (0430, or 0630 for an advice) arrives; a failed attempt (timeout, bad
  MAC, another MTI, the link lost while sending, any other failure such as an HSM
  timeout) reschedules it with exponential backoff with full jitter
  (``posp.backoff``) under ceilings from ``min_backoff_s`` doubling to
  ``max_backoff_s``.
* No signed-on link is not an attempt: items are neither leased nor rescheduled
  while the link is down, and the forwarder runs the moment it signs on again
  (``NetworkLink.when_up``), so a restart or an outage does not leave reversals
  waiting out a backoff that grew while nothing could be sent.  Repeats
  are safe: the network answers a repeated 0420 with 00 without undoing twice.
* Each attempt gets a fresh F7/F11 (the link assigns them), so a late 0430 of an
  earlier attempt is counted as unmatched rather than confused with this one.

Payload format (``SafItem.payload``): the encoded network-link frame body of the 0420
(:func:`saf_payload`), without PIN, track or chip data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Final

from posp.backoff import full_jitter_s
from posp.errors import DecodeError, NetworkError, StoreError
from posp.iso8583 import Message, NetworkFrame, NetworkHeader, decode_network, encode_network
from posp.log import get_logger
from posp.network.link import NetworkLink
from posp.store.api import SafItem, Store

log = get_logger("posp.network.saf")
_FRESH_PER_ATTEMPT: Final = (7, 11, 128)
_UNDECODABLE_RETRY_S: Final = 24 * 3600.0


def saf_payload(reversal: Message) -> bytes:
    """Encode a 0420 for ``SafItem.payload``."""
    return encode_network(NetworkFrame(NetworkHeader("", ""), reversal))


def reversal_from_payload(payload: bytes) -> Message:
    """The 0420 in a payload, ready to send again (7, 11, 128 removed).  DecodeError."""
    message = decode_network(payload).message
    for n in _FRESH_PER_ATTEMPT:
        message.fields.pop(n, None)
    return message


def answer_mti(request_mti: str) -> str:
    """The network's answer MTI for a request MTI (0420 → 0430, 0620 → 0630)."""
    return f"{int(request_mti) + 10:04d}" if request_mti.isdigit() else ""


def backoff_s(attempts: int, min_s: float, max_s: float) -> float:
    """Delay before the next attempt after ``attempts`` failures: full jitter under
    min·2^n, capped (``posp.backoff``)."""
    return full_jitter_s(attempts, min_s, max_s)


class SafForwarder:
    """Polls the store's SAF queue and forwards due reversals through the link."""

    def __init__(
        self,
        store: Store,
        link: NetworkLink,
        *,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        poll_interval_s: float = 1.0,
        batch_size: int = 50,
    ) -> None:
        self._store = store
        self._link = link
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        link.when_up(self._wake.set)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="saf-forwarder")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def kick(self) -> None:
        """Try now (a new item was queued)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.forward_due()
            except StoreError as exc:
                log.error("saf_store_failed", error=type(exc).__name__)
            except Exception as exc:  # the forwarder outlives any one failure
                log.error("saf_pass_failed", error=type(exc).__name__)
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def forward_due(self) -> int:
        """Send every due item once; returns how many were confirmed."""
        confirmed = 0
        if self._link.signed_on:  # else nothing is leased: the sign-on wakes us
            items = await self._store.due_saf(dt.datetime.now(dt.UTC), self._batch_size)
            if items:
                results = await asyncio.gather(*(self._forward(item) for item in items))
                confirmed = sum(results)
        self._link.metrics.saf_depth.set(await self._store.saf_depth())
        return confirmed

    async def _forward(self, item: SafItem) -> bool:
        assert item.id is not None
        try:
            reversal = reversal_from_payload(item.payload)
        except DecodeError as exc:  # kept for the operator, retried rarely
            log.error("saf_payload_undecodable", item=item.id, error=str(exc))
            await self._store.reschedule_saf(
                item.id, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=_UNDECODABLE_RETRY_S)
            )
            return False
        try:
            response = await self._link.send(reversal)
        except NetworkError as exc:
            log.info("saf_attempt_failed", item=item.id, error=type(exc).__name__)
            await self._reschedule(item)
            return False
        except Exception as exc:  # e.g. HsmTimeout while MACing: the item waits, not the queue
            log.error("saf_attempt_error", item=item.id, error=type(exc).__name__)
            await self._reschedule(item)
            return False
        if response.mti != answer_mti(reversal.mti):  # 0430, or 0630 for an advice
            await self._reschedule(item)
            return False
        await self._store.complete_saf(item.id)
        self.delivered += 1
        log.info("saf_delivered", item=item.id, entry=item.entry_id)
        return True

    async def _reschedule(self, item: SafItem) -> None:
        assert item.id is not None
        delay_s = backoff_s(item.attempts, self._min_backoff_s, self._max_backoff_s)
        next_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay_s)
        await self._store.reschedule_saf(item.id, next_at)
