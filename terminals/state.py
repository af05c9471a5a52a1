"""The terminal's mutable state and its JSON persistence.

A simulated terminal keeps everything a real one keeps in battery-backed
memory: trace counter, batch, working keys, journal, pending reversal and
batch-upload progress, so it survives restarts.

Invariants:

* ``last_trace`` is the F11 of the last message originated (0 = none yet);
  the next is ``last_trace % 999999 + 1`` (wraps 999999 -> 000001).
* A pending reversal is recorded *before* its original is sent, as real
  terminals do, so a crash between send and answer still reverses.
* The state file is written atomically with mode 0600: it holds clear keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posp.iso8583.fields import UploadRecord
from terminals.config import TerminalConfig
from terminals.journal import JournalEntry

MAX_TRACE = 999999


def next_trace_after(trace: int) -> int:
    """The trace that follows ``trace``: 1..999999, wrapping to 1."""
    return trace % MAX_TRACE + 1


@dataclass(slots=True)
class PendingReversal:
    """The saved original request (encoded body, no LEN) and the reason for 39."""

    kind: str
    original_body: bytes
    reason: str = "98"


@dataclass(slots=True)
class UploadProgress:
    """A batch upload under way: the records decided at settlement time, how
    many the switch acknowledged, and which end message to send."""

    records: list[UploadRecord]
    acked: int
    balanced: bool


@dataclass(slots=True)
class TmsHeld:
    """What terminal management gave the terminal (terminal-link §8, §10): the
    header digit 6 of the last answer, the parameters it applied, the CAPK and
    AID TLV sets it downloaded (hex), and the F59 identity it sends."""

    processing: str = "0"
    param_version: int | None = None
    merchant_name: str | None = None
    purchase_cap_minor: int | None = None
    refund_cap_minor: int | None = None
    transfer_cap_minor: int | None = None
    no_pin_limit_minor: int | None = None
    capks: list[str] = field(default_factory=list)
    aids: list[str] = field(default_factory=list)
    identity: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> TmsHeld:
        known = set(cls.__slots__)  # type: ignore[attr-defined]
        return cls(**{k: v for k, v in (raw or {}).items() if k in known})


@dataclass(slots=True)
class TerminalState:
    """Everything that changes as the terminal works."""

    last_trace: int = 0
    batch: str = "000001"
    signed_in: bool = False
    key_variant: str | None = None
    pik: bytes | None = None
    mak: bytes | None = None
    tdk: bytes | None = None
    clock_date: str = ""  # MMDD from the last sign-in answer
    clock_time: str = ""  # hhmmss
    journal: dict[str, JournalEntry] = field(default_factory=dict)
    pending_reversal: PendingReversal | None = None
    #: Chip: DF31 advice F55 per original trace (0620 due) and TC F55 per trace
    #: (uploaded after settlement); in memory only (terminals.chipflow).
    script_advices: dict[str, bytes] = field(default_factory=dict)
    tcs: dict[str, bytes] = field(default_factory=dict)
    upload: UploadProgress | None = None
    tms: TmsHeld = field(default_factory=TmsHeld)

    def to_json(self) -> dict[str, Any]:
        def hex_or_none(b: bytes | None) -> str | None:
            return None if b is None else b.hex().upper()

        reversal = self.pending_reversal
        upload = self.upload
        return {
            "last_trace": self.last_trace,
            "batch": self.batch,
            "signed_in": self.signed_in,
            "key_variant": self.key_variant,
            "pik": hex_or_none(self.pik),
            "mak": hex_or_none(self.mak),
            "tdk": hex_or_none(self.tdk),
            "clock_date": self.clock_date,
            "clock_time": self.clock_time,
            "journal": [e.to_json() for e in self.journal.values()],
            "pending_reversal": None
            if reversal is None
            else {
                "kind": reversal.kind,
                "original_body": reversal.original_body.hex().upper(),
                "reason": reversal.reason,
            },
            "upload": None
            if upload is None
            else {
                "records": [[r.card_class, r.trace, r.pan, r.amount_minor] for r in upload.records],
                "acked": upload.acked,
                "balanced": upload.balanced,
            },
            "tms": self.tms.to_json(),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TerminalState:
        def bytes_or_none(s: str | None) -> bytes | None:
            return None if s is None else bytes.fromhex(s)

        entries = [JournalEntry.from_json(e) for e in raw.get("journal", [])]
        rev = raw.get("pending_reversal")
        up = raw.get("upload")
        return cls(
            last_trace=int(raw["last_trace"]),
            batch=str(raw["batch"]),
            signed_in=bool(raw["signed_in"]),
            key_variant=raw.get("key_variant"),
            pik=bytes_or_none(raw.get("pik")),
            mak=bytes_or_none(raw.get("mak")),
            tdk=bytes_or_none(raw.get("tdk")),
            clock_date=raw.get("clock_date", ""),
            clock_time=raw.get("clock_time", ""),
            journal={e.trace: e for e in entries},
            pending_reversal=None
            if rev is None
            else PendingReversal(rev["kind"], bytes.fromhex(rev["original_body"]), rev["reason"]),
            upload=None
            if up is None
            else UploadProgress(
                [UploadRecord(c, t, p, int(a)) for c, t, p, a in up["records"]],
                int(up["acked"]),
                bool(up["balanced"]),
            ),
            tms=TmsHeld.from_json(raw.get("tms")),
        )

    def __repr__(self) -> str:
        return (
            f"TerminalState(trace={self.last_trace}, batch={self.batch}, "
            f"signed_in={self.signed_in}, journal={len(self.journal)}, "
            f"reversal={self.pending_reversal is not None})"
        )


def save_terminal(path: str | Path, config: TerminalConfig, state: TerminalState) -> None:
    """Write config + state atomically, readable only by the owner."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"config": config.to_json(), "state": state.to_json()}, handle, indent=1)
    os.replace(tmp, target)
    os.chmod(target, 0o600)


def load_terminal(path: str | Path) -> tuple[TerminalConfig, TerminalState]:
    """Read what ``save_terminal`` wrote."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return TerminalConfig.from_json(raw["config"]), TerminalState.from_json(raw["state"])
