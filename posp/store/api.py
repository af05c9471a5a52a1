"""The store: registry (merchants, terminals, keys), journal, store-and-forward
queue, settlement and batch upload.  One interface, two implementations
(``posp.store.sqlite.SqliteStore`` — the embedded default — and
``posp.store.postgres.PostgresStore``), one contract suite
(``tests/store/test_store_contract.py``) run against both.

Invariants:
* Keys are stored only as LMK-encrypted hex (never clear).
* PANs are stored masked (6+4) plus a keyed hash (``pan_hash``) for matching
  batch-upload records; never in clear.
* (terminal_id, batch, trace, direction) is unique for financial journal
  entries: ``insert_entry`` raises ``DuplicateTransaction`` so two switch
  instances on one PostgreSQL cannot both accept the same request.
  ``direction`` is ``"original"`` for requests and ``"reversal"`` for 0400s,
  because a reversal reuses its original's trace.  Management messages
  (sign-in, echo, settlement, batch upload) are journaled with ``dedupe=False``.
* State changes that must happen exactly once (void, reversal, refund
  accumulation, completion of a pre-auth) are compare-and-set operations that
  return whether this caller won.
* Every method is async and never blocks the event loop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

# Journal entry states.
PENDING = "pending"  # forwarded, outcome not yet known
APPROVED = "approved"
DECLINED = "declined"
VOIDED = "voided"  # an approved original later voided
REVERSED = "reversed"  # an approved/pending original later reversed
TIMED_OUT = "timed_out"  # network did not answer; a reversal is queued
COMPLETED = "completed"  # a pre-auth fully consumed by a completion


@dataclass(slots=True)
class Merchant:
    merchant_id: str  # ans15
    name: str
    category_code: str  # MCC n4
    status: str = "active"  # active | disabled
    created_at: dt.datetime | None = None


class EntryThen(Protocol):
    """Work that runs in a journal insert's transaction, given the new entry's id
    (``SqlStore.insert_entry(then=...)``); it keeps what it learns on itself.
    ``sqlite`` runs in the writer thread on its sqlite3 connection; ``postgres``
    on the asyncpg connection inside the transaction.  Raising rolls back both."""

    def sqlite(self, connection: Any, entry_id: int) -> None: ...

    async def postgres(self, connection: Any, entry_id: int) -> None: ...


@dataclass(slots=True)
class Terminal:
    terminal_id: str  # ans8
    merchant_id: str
    status: str = "active"  # active | disabled
    tmk_lmk: str | None = None  # TMK under LMK (type 002, scheme U)
    tmk_kcv: str | None = None
    tpk_lmk: str | None = None  # working PIN key under LMK (None = not signed in)
    tak_lmk: str | None = None  # working MAC key under LMK (single length)
    tdk_lmk: str | None = None  # track data key under LMK (sign-in 004 only)
    keys_generated_at: dt.datetime | None = None
    batch: str = "000001"  # current open batch n6
    device_serial: str | None = None  # when set, sign-in F62 must match
    created_at: dt.datetime | None = None


@dataclass(slots=True)
class JournalEntry:
    """One request the switch received and what became of it."""

    terminal_id: str
    merchant_id: str
    batch: str
    trace: str
    txn_type: str  # routes table name: purchase, refund, preauth, reversal, sign_in, ...
    mti: str
    direction: str = "original"  # original | reversal
    processing_code: str = ""
    amount_minor: int | None = None
    currency: str = "156"
    pan_masked: str | None = None
    pan_hash: str | None = None
    card_class: str = "00"  # 00 domestic, 01 foreign
    card_org: str | None = None  # CUP / VIS / MCC / JCB / AEX
    state: str = PENDING
    response_code: str | None = None
    rrn: str | None = None
    auth_code: str | None = None
    local_date: str | None = None  # MMDD the switch answered with (F13)
    local_time: str | None = None  # hhmmss (F12)
    settlement_date: str | None = None  # MMDD (F15)
    original_id: int | None = None  # for voids, refunds, completions, reversals
    #: Approved refunds against this entry plus the reservations of refunds and
    #: voids of it in flight (each carried by that entry's ``reserved_minor``).
    refunded_minor: int = 0
    #: What this refund or purchase void counts in its original's refunded_minor
    #: (its reservation); given back once, by ``release_reservation``.
    reserved_minor: int = 0
    network_stan: str | None = None  # switch trace on the network link (F11)
    network_f7: str | None = None  # transmission date-time sent upstream
    node_id: str = ""
    entry_mode: str = ""  # F22 digits 1-2: 02 swipe, 05 chip, 07 contactless (chip: TC due)
    id: int | None = None
    created_at: dt.datetime | None = None


@dataclass(slots=True)
class SafItem:
    """A reversal (0420) — or a chip script advice (0620) — that must reach the
    network; one per journal entry, ever (delivered ones are kept)."""

    entry_id: int  # journal id of the reversed original (or of the advice)
    payload: bytes = field(repr=False)  # encoded 0420 / 0620 body: may hold card numbers
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    id: int | None = None
    created_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None  # the 0430 came; the row stays (one 0420 ever)


@dataclass(slots=True)
class DeferredReversal:
    """A terminal 0400 recorded while its MAC could not be checked (HSM down):
    verified, then applied or refused, once the HSM answers again."""

    entry_id: int  # journal id of the 0400's own entry
    body: bytes = field(repr=False)  # the frame body as received (may hold the PAN)
    tak_lmk: str = field(repr=False)  # the TAK the terminal held when it sent it
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class OpenEntries:
    """The journal's pending entries (in flight, or left in doubt by a dead switch)
    and the rows of the list the in-doubt sweep reads them from: on PostgreSQL
    journal_open (migration 0037), which also holds entries that ended since its
    last cleanup until the next sweep deletes them; on SQLite the pending entries
    themselves (``listed == pending``)."""

    pending: int
    listed: int


@dataclass(slots=True)
class BatchTotals:
    """Debits = approved purchases and completions neither voided nor reversed;
    credits = approved refunds. Per card class."""

    debit_amount_minor: int = 0
    debit_count: int = 0
    credit_amount_minor: int = 0
    credit_count: int = 0


@dataclass(slots=True)
class UploadedRecord:
    """One 0320 batch-upload record as the terminal reported it, with the check result."""

    terminal_id: str
    batch: str
    trace: str
    card_class: str
    pan_hash: str
    amount_minor: int
    matched: bool  # journal has an approved debit/credit with that trace, PAN and amount
    reason: str = ""  # why not matched (for the operator)


@dataclass(slots=True)
class Settlement:
    """The result of one 0500 for a terminal and batch."""

    terminal_id: str
    merchant_id: str
    batch: str
    domestic: BatchTotals = field(default_factory=BatchTotals)
    foreign: BatchTotals = field(default_factory=BatchTotals)
    terminal_domestic: BatchTotals = field(default_factory=BatchTotals)
    terminal_foreign: BatchTotals = field(default_factory=BatchTotals)
    domestic_balanced: bool = True
    foreign_balanced: bool = True
    upload_records: int = 0  # records received so far
    upload_mismatches: int = 0
    upload_complete: bool = False  # 202/207 end message received
    settled_at: dt.datetime | None = None
    id: int | None = None


class Store(Protocol):
    """Async persistence for the switch.  Implementations apply migrations in ``open()``."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # --- registry: merchants ---------------------------------------------
    async def add_merchant(self, merchant: Merchant) -> None:
        """Raises StoreError if the id exists."""

    async def get_merchant(self, merchant_id: str, *, max_age_s: float = 0.0) -> Merchant | None:
        """With ``max_age_s`` > 0 the row may come from this instance's cache, read at
        most that long ago; changes through this instance are seen at once, changes
        made elsewhere within ``max_age_s`` (``posp.store.registry_cache``)."""

    async def list_merchants(self) -> list[Merchant]: ...
    async def set_merchant_status(self, merchant_id: str, status: str) -> bool:
        """False when the merchant is unknown."""

    # --- registry: terminals ---------------------------------------------
    async def add_terminal(self, terminal: Terminal) -> None:
        """Raises StoreError if the id exists or the merchant is unknown."""

    async def get_terminal(self, terminal_id: str, *, max_age_s: float = 0.0) -> Terminal | None:
        """As ``get_merchant``: cached up to ``max_age_s``, 0 reads the database."""

    async def list_terminals(self, merchant_id: str | None = None) -> list[Terminal]: ...
    async def set_terminal_status(self, terminal_id: str, status: str) -> bool: ...
    async def set_terminal_tmk(self, terminal_id: str, tmk_lmk: str, tmk_kcv: str) -> bool:
        """Replace the TMK and clear the working keys (the terminal must sign in again)."""

    async def set_working_keys(
        self,
        terminal_id: str,
        tpk_lmk: str,
        tak_lmk: str,
        tdk_lmk: str | None,
        generated_at: dt.datetime,
    ) -> None: ...
    async def clear_working_keys(self, terminal_id: str) -> None:
        """Sign-off: the terminal has no usable working keys until it signs in."""

    async def count_signed_in(self, since: dt.datetime) -> int:
        """Terminals with working keys generated at or after ``since``."""

    # --- journal ---------------------------------------------------------
    async def insert_entry(
        self, entry: JournalEntry, *, dedupe: bool = True, then: EntryThen | None = None
    ) -> int:
        """Insert and return the id.  With ``dedupe`` raises DuplicateTransaction
        when (terminal_id, batch, trace, direction) exists.  ``then`` runs in the
        insert's transaction (the SQL stores; others raise StoreError when given one)."""

    async def update_entry(self, entry_id: int, **changes: object) -> None:
        """Set the named JournalEntry attributes (state, response_code, rrn, ...).
        No write changes a state to ``pending`` (an entry may only be inserted
        so): that change, here or by ``finish_entry``, ``transition`` or
        ``reverse_and_queue``, raises StoreError."""

    async def get_entry(self, entry_id: int) -> JournalEntry | None: ...
    async def find_by_trace(
        self, terminal_id: str, batch: str, trace: str, direction: str = "original"
    ) -> JournalEntry | None: ...
    async def find_by_rrn(
        self, rrn: str, *, local_date: str | None = None, merchant_id: str | None = None
    ) -> JournalEntry | None:
        """The original entry with that RRN (and answer date MMDD, and merchant)."""

    async def find_preauth(
        self, merchant_id: str, auth_code: str, local_date: str | None, pan_hash: str | None
    ) -> JournalEntry | None:
        """The approved pre-authorization with that auth code (date, card)."""

    async def transition(self, entry_id: int, from_states: tuple[str, ...], to_state: str) -> bool:
        """Compare-and-set the state; True only for the caller that made the change."""

    async def finish_entry(
        self, entry_id: int, from_states: tuple[str, ...], **changes: object
    ) -> bool:
        """``transition`` and ``update_entry`` in ONE statement: set ``changes`` (which
        must name the new ``state``) only if the state is one of ``from_states``; True
        only for the caller that made the change (nothing is written otherwise)."""

    async def add_refunded(self, entry_id: int, amount_minor: int, limit_minor: int) -> bool:
        """Atomically add to refunded_minor unless it would exceed limit_minor or go
        below 0; an addition (a reservation) only while the entry is approved."""

    async def reserve_refunded(
        self, original_id: int, amount_minor: int, limit_minor: int, entry_id: int
    ) -> bool:
        """``add_refunded`` of a reservation (``amount_minor`` > 0) made by the pending
        entry ``entry_id``, which records it (``reserved_minor``, ``original_id``) in
        the SAME transaction: the reservation exists exactly when its entry carries it."""

    async def release_reservation(self, entry_id: int, amount_minor: int) -> bool:
        """Give back the reservation entry ``entry_id`` holds in its original:
        compare-and-set its ``reserved_minor`` from ``amount_minor`` to 0 and, only for
        the caller that made that change, take ``amount_minor`` off its original's
        ``refunded_minor`` in the SAME transaction (exactly once, whoever releases)."""

    async def reverse_and_queue(
        self, entry_id: int, from_states: tuple[str, ...], to_state: str, item: SafItem
    ) -> bool:
        """Compare-and-set the entry's state and, only if this caller made the change,
        queue ``item`` (its 0420) in the SAME transaction: an entry that may have
        reached the network never reaches ``timed_out``/``reversed`` without its
        0420, whatever crashes.  The queue stays idempotent per entry."""

    async def in_doubt_entries(
        self, created_before: dt.datetime, limit: int = 100
    ) -> list[JournalEntry]:
        """Entries still ``pending`` that were created before the cut-off (their
        request's deadline long past: the switch handling them died): originals that
        may have reached the network, and terminal 0400s cut off mid-way."""

    async def open_entries(self) -> OpenEntries:
        """How many journal entries are pending, and how many rows list them
        (``OpenEntries``)."""

    async def stranded_reservations(
        self,
        created_before: dt.datetime,
        limit: int = 100,
        after: JournalEntry | None = None,
    ) -> list[JournalEntry]:
        """Entries created before the cut-off that ended not approved (declined,
        timed out, reversed) still carrying a reservation in their original: a
        release that failed (store trouble) left it; the sweeper gives it back.
        (An approved refund's is its share; an approved void's goes back with, or
        stays for want of, its original's change to voided.)  In creation order,
        after the entry ``after`` (the caller pages past rows it could not release)."""

    # --- store-and-forward -------------------------------------------------
    async def enqueue_saf(self, item: SafItem) -> int:
        """Durably queue a reversal; idempotent per entry_id (returns the existing id)."""

    async def due_saf(self, now: dt.datetime, limit: int = 100) -> list[SafItem]: ...
    async def reschedule_saf(self, item_id: int, next_attempt_at: dt.datetime) -> None:
        """Increment attempts and set the next attempt time."""

    async def complete_saf(self, item_id: int) -> None:
        """The 0430 arrived: mark it delivered (the row stays, so the entry can
        never get a second 0420)."""

    async def saf_depth(self) -> int:
        """0420s not delivered yet."""

    async def get_saf(self, entry_id: int) -> SafItem | None:
        """The 0420 of a journal entry (delivered or not), None when it has none."""

    # --- reversals waiting for the HSM ---------------------------------------
    async def defer_reversal(self, item: DeferredReversal) -> None:
        """Keep a 0400 whose MAC could not be checked; idempotent per entry."""

    async def due_deferred(self, now: dt.datetime, limit: int = 50) -> list[DeferredReversal]: ...
    async def reschedule_deferred(self, entry_id: int, next_attempt_at: dt.datetime) -> None: ...
    async def finish_deferred(self, entry_id: int) -> None:
        """The 0400 was verified and applied, or refused: forget its body."""

    # --- settlement and batch upload --------------------------------------
    async def batch_totals(self, terminal_id: str, batch: str) -> tuple[BatchTotals, BatchTotals]:
        """(domestic, foreign) totals from the journal."""

    async def record_settlement(self, settlement: Settlement) -> int:
        """Store the 0500 outcome (replacing an earlier one for the same terminal/batch)."""

    async def get_settlement(self, terminal_id: str, batch: str) -> Settlement | None: ...
    async def list_settlements(
        self,
        *,
        date: dt.date | None = None,
        terminal_id: str | None = None,
        utc_offset_hours: float = 0.0,
    ) -> list[Settlement]:
        """Settlements recorded on ``date`` — the business day that starts at local
        midnight ``utc_offset_hours`` east of UTC (0: the UTC day) — and/or of one
        terminal, ordered by time."""

    async def record_upload(self, record: UploadedRecord) -> bool:
        """Idempotent on (terminal_id, batch, trace); True when newly recorded."""

    async def find_debit_or_credit(
        self, terminal_id: str, batch: str, trace: str
    ) -> JournalEntry | None:
        """The approved, non-voided, non-reversed purchase/completion/refund for a trace."""

    async def list_uploads(self, terminal_id: str, batch: str) -> list[UploadedRecord]: ...
    async def list_entries(self, terminal_id: str, batch: str) -> list[JournalEntry]:
        """Every journal entry of a terminal's batch, oldest first (TC reconciliation)."""
        ...

    async def close_batch(self, terminal_id: str, batch: str, next_batch: str) -> bool:
        """Compare-and-set the terminal's open batch from ``batch`` to ``next_batch``."""

    async def list_batches(self, terminal_id: str | None = None) -> list[dict[str, object]]:
        """Per terminal and batch: counts, amounts, open/closed, settled, balanced."""

    # --- sequences -------------------------------------------------------
    async def next_sequence(self, name: str) -> int:
        """A counter shared by every instance on the same database (RRNs, network STAN)."""
