"""What every pipeline step sees: the services (shared, long-lived) and the
transaction context (one per request).

Invariants:
* A step reads the request through ``ctx.message`` and writes the answer's
  extra fields into ``ctx.response``; the echoed fields, 12/13/15/32/37/39 and
  the MAC are added by ``posp.pipeline.respond`` at the end.
* ``ctx.pan`` holds the clear PAN only in memory for the request's lifetime;
  it is excluded from the repr and never logged or stored (the journal keeps
  the 6+4 mask and a keyed hash).  So are ``body`` (the raw frame), ``response``,
  the clear tracks and the translated PIN block.
* What one step hands another is a typed field here, never a string-keyed bag.
* ``ctx.now`` is the switch's local time (UTC+8 by default), read once per
  request so that F12/F13 and the journal agree.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from posp.errors import DecodeError
from posp.iso8583 import Message, TerminalFrame
from posp.iso8583.fields import Field60
from posp.iso8583.message import FieldValue

if TYPE_CHECKING:
    from posp.hsm.api import HsmClient
    from posp.keys import KeyService
    from posp.metrics import SwitchMetrics
    from posp.network.ids import IdAllocator
    from posp.network.link import EarlyMac
    from posp.pipeline.codes import ResponseCode
    from posp.pipeline.risk import RiskOutcome, RiskService
    from posp.pipeline.route import Route
    from posp.risk.lifecycle import DeviceIdentity, TerminalRiskState
    from posp.settings import Settings
    from posp.store.api import JournalEntry, Merchant, Store, Terminal
    from posp.tms.service import TerminalManagement, TerminalView


@functools.lru_cache(maxsize=8)
def _zone(offset_hours: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=offset_hours))


@functools.lru_cache(maxsize=4)
def _keyed_hmac(key: str) -> hmac.HMAC:
    """An HMAC-SHA256 with ``key`` and no data yet: callers ``copy()`` it."""
    return hmac.new(key.encode(), digestmod=hashlib.sha256)


class NetworkPort(Protocol):
    """What the steps need of the card network link (``posp.network.link.NetworkLink``)."""

    @property
    def signed_on(self) -> bool: ...
    @property
    def zpk_lmk(self) -> str: ...
    async def send(
        self,
        request: Message,
        *,
        timeout_s: float | None = None,
        on_arrival: Callable[[Message], None] | None = None,
        early: EarlyMac | None = None,
    ) -> Message: ...
    async def premac(self, request: Message) -> EarlyMac: ...


class SafPort(Protocol):
    """What the steps need of the 0420 forwarder (``posp.network.saf.SafForwarder``)."""

    async def kick(self) -> None: ...


@dataclass(slots=True)
class Services:
    """The long-lived collaborators every step may use."""

    settings: Settings
    store: Store
    hsm: HsmClient
    keys: KeyService
    ids: IdAllocator
    metrics: SwitchMetrics
    #: The card network link once configured (``NetworkLink``); None answers 91.
    link: NetworkPort | None = None
    #: The store-and-forward of 0420s (``SafForwarder``) when there is a link.
    saf: SafPort | None = None
    #: Terminal management (parameters, IC sets, rollouts) when the store is SQL.
    tms: TerminalManagement | None = None
    #: The risk rules (``posp.pipeline.risk``); None: no risk step (risk.enabled false).
    risk: RiskService | None = None

    def local_now(self) -> dt.datetime:
        return dt.datetime.now(_zone(self.settings.network.tz_offset_hours))

    def pan_hash(self, pan: str) -> str:
        """Keyed hash of a PAN (HMAC-SHA256, hex): matches cards without storing them."""
        keyed = _keyed_hmac(self.settings.pan_hash_key).copy()  # the key is set up once
        keyed.update(pan.encode())
        return keyed.hexdigest()

    def card_class(self, pan: str | None, card_org: str | None) -> str:
        """``00`` domestic / ``01`` foreign, by card organisation, else by BIN prefix."""
        rules = self.settings.settlement
        if card_org is not None:
            return "00" if card_org in rules.domestic_card_orgs else "01"
        if pan is None or any(pan.startswith(p) for p in rules.domestic_bin_prefixes):
            return "00"
        return "01"


@dataclass(slots=True)
class TxnContext:
    """One request on its way through the route's steps."""

    body: bytes = field(repr=False)  # the raw frame: PAN, tracks, PIN block
    frame: TerminalFrame
    route: Route
    services: Services = field(repr=False)
    f60: Field60
    now: dt.datetime
    started_s: float  # perf_counter at frame arrival
    terminal: Terminal | None = None
    merchant: Merchant | None = None
    registry_fresh: bool = False  # terminal/merchant re-read from the database (checks)
    response: dict[int, FieldValue] = field(default_factory=dict, repr=False)
    response_f60: str | None = None  # replaces the echoed 60 (sign-in gives the batch)
    processing: str = "0"  # header digit 6 of the answer
    keys_usable: bool = False  # working keys present and unexpired (the answer can be MACed)
    #: The terminal's management view (header digit 6, caps) once loaded.
    tms_view: TerminalView | None = None
    entry: JournalEntry | None = None
    entry_id: int | None = None
    final_state: str | None = None  # a financial step's own journal state (e.g. timed_out)
    #: The answer when the deadline passes: 96, or 98 once a request was forwarded.
    timeout_code: str = "96"
    rrn: str | None = None
    auth_code: str | None = None
    card_org: str | None = None
    settlement_date: str | None = None
    original: JournalEntry | None = None
    network_stan: str | None = None  # F11 of the network request, journaled before sending
    network_f7: str | None = None  # F7 of the network request, likewise
    sent: Message | None = field(default=None, repr=False)  # the network request as sent
    answer_unsigned: bool = False  # the answer's MAC could not be computed (HSM failure)
    pan: str | None = field(default=None, repr=False)
    receiving_pan: str | None = field(default=None, repr=False)  # a transfer's F62 card
    # What the steps hand each other (card data never in the repr).
    track2: str | None = field(default=None, repr=False)  # clear, for the network request
    track3: str | None = field(default=None, repr=False)
    pin_block_zpk: str | None = field(default=None, repr=False)  # hex, translated to the ZPK
    #: PIN translation started alongside the MAC check: (its inputs, the task).
    pin_task: tuple[tuple[Any, ...], asyncio.Future[str]] | None = field(default=None, repr=False)
    #: The network MAC started alongside the MAC check: the task, then its result.
    early_mac: asyncio.Future[EarlyMac] | EarlyMac | None = field(default=None, repr=False)
    #: The answer started before the last journal write: (its code, the task).
    early_answer: tuple[str, asyncio.Future[bytes | None]] | None = field(default=None, repr=False)
    #: An answer started while the network response's MAC is checked:
    #: (the response, the terminal code, the context fields before).
    staged_answer: tuple[Message, ResponseCode, tuple[Any, ...]] | None = field(
        default=None, repr=False
    )
    unsettled: Message | None = field(default=None, repr=False)  # sent, fate not yet recorded
    journal_changes: dict[str, object] = field(default_factory=dict, repr=False)
    journal_recorded: dict[str, object] | None = field(default=None, repr=False)
    #: Reserved in the original's refunded_minor by this refund or purchase void
    #: (``originals``), and carried by its pending entry so a crash cannot strand it.
    reserved_minor: int = 0
    original_moved: bool = False  # the approval moved the original on (voided, completed)
    repeated: bool = False  # the request repeats one already journaled (0400, upload end)
    #: The device's F59 A2 identity (TUSN, SIM ICCID) when it sent one: device binding.
    device_identity: DeviceIdentity | None = None
    reversal_deferred: bool = False  # a 0400 kept until the HSM can check its MAC
    risk: RiskOutcome | None = None  # the risk step's evaluation and hold
    terminal_risk: TerminalRiskState | None = None  # dormancy/binding state (lifecycle)
    #: ``pan_hash``'s last answer: (the PAN, its keyed hash).
    _pan_hashed: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def message(self) -> Message:
        return self.frame.message

    def pan_hash(self, pan: str) -> str:
        """``Services.pan_hash`` of ``pan``, computed once per request (the risk
        step, the journal entry and the original's lookup all need it)."""
        hashed = self._pan_hashed
        if hashed is None or hashed[0] != pan:
            hashed = self._pan_hashed = (pan, self.services.pan_hash(pan))
        return hashed[1]

    def text(self, number: int) -> str:
        """Field ``number`` as text; DecodeError (→ 30) when missing or binary."""
        value = self.frame.message.fields.get(number)
        if value is None:
            raise DecodeError("required field missing", field=number)
        if not isinstance(value, str):
            raise DecodeError("field is binary", field=number)
        return value

    @property
    def local_date(self) -> str:
        """MMDD of ``now`` (formatted by hand: strftime is slow on the hot path)."""
        now = self.now
        return f"{now.month:02d}{now.day:02d}"

    @property
    def local_time(self) -> str:
        """hhmmss of ``now``."""
        now = self.now
        return f"{now.hour:02d}{now.minute:02d}{now.second:02d}"


def card_pan(message: Message) -> str | None:
    """The PAN from F2, else from track 2 before the separator when track data
    is not encrypted (F53 digit 3 = 1 means it is; the PAN then waits for the
    financial steps to decrypt it)."""
    pan = message.get(2)
    if isinstance(pan, str) and pan:
        return pan
    track2 = message.get(35)
    security = message.get(53)
    encrypted = isinstance(security, str) and len(security) >= 3 and security[2] == "1"
    if isinstance(track2, str) and not encrypted:
        return pan_from_track2(track2)
    return None


def pan_from_track2(track2: str) -> str | None:
    """The digits before the separator (``=`` or ``D``) of clear track 2, or None."""
    head = track2.replace("D", "=").split("=", 1)[0]
    return head if head.isdigit() else None


def discard_outcome(task: asyncio.Future[Any]) -> None:
    """Done-callback of a task started early that nobody may await (the route
    stopped first): retrieve its outcome so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()
