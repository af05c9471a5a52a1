"""Sub-field layouts of composite fields (terminal-link.md §2-3, network-link.md §2).

Invariants: every ``parse`` raises ``DecodeError`` naming the field (offset =
character position within the field), every ``render`` raises ``EncodeError``
naming the field; neither quotes the value.  ``render(parse(s)) == s`` for
every valid ``s``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from posp.errors import DecodeError, EncodeError
from posp.iso8583.message import mask_pan


def _digits(field: int, value: str, size: int, what: str) -> str:
    """``value`` checked to be exactly ``size`` ASCII digits (for render)."""
    if len(value) != size or not (value.isdigit() and value.isascii()):
        raise EncodeError(f"{what} must be {size} digits", field=field)
    return value


def _is_digits_or_empty(value: str) -> bool:
    return value == "" or (value.isdigit() and value.isascii())


def _amount(field: int, amount: int, size: int, what: str) -> str:
    if not 0 <= amount < 10**size:
        raise EncodeError(f"{what} out of range for n{size}", field=field)
    return f"{amount:0{size}d}"


def _require_digits(field: int, s: str, sizes: Iterable[int]) -> None:
    """For parse: ``s`` has one of the allowed lengths and is all digits."""
    if len(s) not in tuple(sizes):
        raise DecodeError(f"length {len(s)} not allowed", field=field)
    if s and not (s.isdigit() and s.isascii()):
        raise DecodeError("not digits", field=field)


# --- F60 / F61 (terminal link) ---------------------------------------------------


@dataclass(frozen=True)
class Field60:
    """60.1 message type n2, 60.2 batch n6, 60.3 network code n3, then 60.4-60.6."""

    msg_type: str
    batch: str
    net_code: str
    extra: str = ""

    @classmethod
    def parse(cls, s: str) -> Field60:
        if len(s) < 11 or len(s) > 17 or not (s.isdigit() and s.isascii()):
            raise DecodeError("60.1-60.3 must be 11 digits, at most 17 in all", field=60)
        return cls(s[0:2], s[2:8], s[8:11], s[11:])

    def render(self) -> str:
        head = (
            _digits(60, self.msg_type, 2, "60.1")
            + _digits(60, self.batch, 6, "60.2")
            + _digits(60, self.net_code, 3, "60.3")
        )
        if len(self.extra) > 6 or not _is_digits_or_empty(self.extra):
            raise EncodeError("60.4-60.6 must be up to 6 digits", field=60)
        return head + self.extra


@dataclass(frozen=True)
class Field61:
    """Original message data: batch n6, trace n6, date MMDD n4 (optional), extra."""

    batch: str
    trace: str
    date: str = ""
    extra: str = ""

    @classmethod
    def parse(cls, s: str) -> Field61:
        if len(s) < 12 or len(s) > 29 or not (s.isdigit() and s.isascii()):
            raise DecodeError("61 must be 12 to 29 digits", field=61)
        if 12 < len(s) < 16:
            raise DecodeError("61.3 date must be 4 digits", field=61)
        return cls(s[0:6], s[6:12], s[12:16], s[16:])

    def render(self) -> str:
        s = _digits(61, self.batch, 6, "61.1 batch") + _digits(61, self.trace, 6, "61.2 trace")
        if self.date:
            s += _digits(61, self.date, 4, "61.3 date")
        elif self.extra:
            raise EncodeError("61 extra data needs the date", field=61)
        if len(s) + len(self.extra) > 29 or not _is_digits_or_empty(self.extra):
            raise EncodeError("61 extra must be digits, 29 digits in all", field=61)
        return s + self.extra


# --- F48: settlement totals and batch upload -------------------------------------

_TOTALS_DIGITS: Final = 31  # 12 + 3 + 12 + 3 + 1


@dataclass(frozen=True)
class SettlementTotalsF48:
    """One card class's totals; ``result`` is 0 sent, 1 balanced, 2 unbalanced."""

    debit_amount_minor: int
    debit_count: int
    credit_amount_minor: int
    credit_count: int
    result: str = "0"

    @classmethod
    def parse(cls, s: str) -> SettlementTotalsF48:
        _require_digits(48, s, (_TOTALS_DIGITS,))
        return cls(int(s[0:12]), int(s[12:15]), int(s[15:27]), int(s[27:30]), s[30])

    def render(self) -> str:
        return (
            _amount(48, self.debit_amount_minor, 12, "debit amount")
            + _amount(48, self.debit_count, 3, "debit count")
            + _amount(48, self.credit_amount_minor, 12, "credit amount")
            + _amount(48, self.credit_count, 3, "credit count")
            + _digits(48, self.result, 1, "settlement result")
        )


@dataclass(frozen=True)
class SettlementF48:
    """Settlement F48: domestic totals then foreign totals, 62 digits."""

    domestic: SettlementTotalsF48
    foreign: SettlementTotalsF48

    @classmethod
    def parse(cls, s: str) -> SettlementF48:
        _require_digits(48, s, (2 * _TOTALS_DIGITS,))
        return cls(
            SettlementTotalsF48.parse(s[:_TOTALS_DIGITS]),
            SettlementTotalsF48.parse(s[_TOTALS_DIGITS:]),
        )

    def render(self) -> str:
        return self.domestic.render() + self.foreign.render()


_UPLOAD_RECORD_DIGITS: Final = 40  # class 2 + trace 6 + PAN 20 + amount 12
_UPLOAD_MAX_RECORDS: Final = 8
_UPLOAD_PAN_DIGITS: Final = 20


@dataclass(frozen=True)
class UploadRecord:
    """One batch-upload record; ``pan`` without its zero fill."""

    card_class: str
    trace: str
    pan: str
    amount_minor: int

    def __repr__(self) -> str:
        return (
            f"UploadRecord(card_class={self.card_class!r}, trace={self.trace!r}, "
            f"pan={mask_pan(self.pan)!r}, amount_minor={self.amount_minor})"
        )


def parse_upload_f48(s: str) -> list[UploadRecord]:
    """Batch-upload F48: record count n2 (at most 8) + 40-digit records."""
    _require_digits(48, s, (2 + k * _UPLOAD_RECORD_DIGITS for k in range(9)))
    count = int(s[:2])
    if count > _UPLOAD_MAX_RECORDS or len(s) != 2 + count * _UPLOAD_RECORD_DIGITS:
        raise DecodeError("record count does not match the records", field=48)
    records = []
    for k in range(count):
        r = s[2 + k * _UPLOAD_RECORD_DIGITS : 2 + (k + 1) * _UPLOAD_RECORD_DIGITS]
        records.append(UploadRecord(r[0:2], r[2:8], r[8:28].lstrip("0"), int(r[28:40])))
    return records


def render_upload_f48(records: Iterable[UploadRecord]) -> str:
    rows = list(records)
    if len(rows) > _UPLOAD_MAX_RECORDS:
        raise EncodeError(f"at most {_UPLOAD_MAX_RECORDS} records", field=48)
    parts = [f"{len(rows):02d}"]
    for r in rows:
        if len(r.pan) > _UPLOAD_PAN_DIGITS or not _is_digits_or_empty(r.pan):
            raise EncodeError("record PAN must be up to 20 digits", field=48)
        parts.append(
            _digits(48, r.card_class, 2, "card class")
            + _digits(48, r.trace, 6, "trace")
            + r.pan.zfill(_UPLOAD_PAN_DIGITS)
            + _amount(48, r.amount_minor, 12, "amount")
        )
    return "".join(parts)


def parse_upload_end_f48(s: str) -> int:
    """Batch-upload end F48: total records n4."""
    _require_digits(48, s, (4,))
    return int(s)


def render_upload_end_f48(total: int) -> str:
    return _amount(48, total, 4, "total records")


# --- F54 balance, F90 original data, F44 -----------------------------------------


@dataclass(frozen=True)
class Balance:
    """F54: account type n2, amount type n2, currency an3, C/D sign, amount n12."""

    account_type: str
    amount_type: str
    currency: str
    sign: str
    amount_minor: int

    @classmethod
    def parse(cls, s: str) -> Balance:
        if len(s) != 20 or not s.isascii():
            raise DecodeError("balance must be 20 characters", field=54)
        if not (s[0:4].isdigit() and s[8:20].isdigit()) or s[7] not in "CD":
            raise DecodeError("balance layout is n2 n2 an3 C/D n12", field=54)
        return cls(s[0:2], s[2:4], s[4:7], s[7], int(s[8:20]))

    def render(self) -> str:
        if len(self.currency) != 3 or not self.currency.isascii():
            raise EncodeError("currency must be 3 characters", field=54)
        if self.sign not in ("C", "D"):
            raise EncodeError("sign must be C or D", field=54)
        return (
            _digits(54, self.account_type, 2, "account type")
            + _digits(54, self.amount_type, 2, "amount type")
            + self.currency
            + self.sign
            + _amount(54, self.amount_minor, 12, "amount")
        )


@dataclass(frozen=True)
class OriginalData:
    """F90: MTI 4 + STAN 6 + F7 10 + acquirer id 11 + forwarding id 11 (zero-filled)."""

    mti: str
    stan: str
    f7: str
    acquirer_id: str
    forwarding_id: str

    @classmethod
    def parse(cls, s: str) -> OriginalData:
        _require_digits(90, s, (42,))
        return cls(s[0:4], s[4:10], s[10:20], s[20:31].lstrip("0"), s[31:42].lstrip("0"))

    def render(self) -> str:
        ids = []
        for what, value in (
            ("acquirer id", self.acquirer_id),
            ("forwarding id", self.forwarding_id),
        ):
            if len(value) > 11 or not _is_digits_or_empty(value):
                raise EncodeError(f"{what} must be up to 11 digits", field=90)
            ids.append(value.zfill(11))
        return (
            _digits(90, self.mti, 4, "original MTI")
            + _digits(90, self.stan, 6, "original STAN")
            + _digits(90, self.f7, 10, "original F7")
            + "".join(ids)
        )


def render_f44(issuer_id: str, acquirer_id: str) -> str:
    """F44: issuer id an11 + acquirer id an11, each left-aligned space-padded."""
    if len(issuer_id) > 11 or len(acquirer_id) > 11:
        raise EncodeError("institution ids must be at most 11 characters", field=44)
    if not (issuer_id.isascii() and acquirer_id.isascii()):
        raise EncodeError("institution ids must be ASCII", field=44)
    return issuer_id.ljust(11) + acquirer_id.ljust(11)


# --- F62 usage 10: the receiving card of a transfer (terminal-link §9) -------------

TRANSFER_F62_USAGE: Final = "10"
_RECEIVING_PAN_DIGITS: Final = range(13, 20)


def parse_transfer_f62(value: bytes) -> str:
    """The receiving card number from F62 ``10`` + length n2 + card number (ASCII).
    DecodeError(field=62) for another usage, a bad length or non-digits."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("usage 10 must be ASCII digits", field=62) from None
    if len(text) < 4 or text[:2] != TRANSFER_F62_USAGE:
        raise DecodeError("usage must be 10 (receiving card)", field=62)
    length_text, pan = text[2:4], text[4:]
    if not (length_text.isdigit() and length_text.isascii()) or int(length_text) != len(pan):
        raise DecodeError("card number length does not match", field=62, offset=2)
    if len(pan) not in _RECEIVING_PAN_DIGITS or not (pan.isdigit() and pan.isascii()):
        raise DecodeError("card number must be 13-19 digits", field=62, offset=4)
    return pan


def render_transfer_f62(pan: str) -> bytes:
    """F62 usage 10 for the receiving card ``pan`` (13-19 digits)."""
    if len(pan) not in _RECEIVING_PAN_DIGITS or not (pan.isdigit() and pan.isascii()):
        raise EncodeError("receiving card number must be 13-19 digits", field=62)
    return f"{TRANSFER_F62_USAGE}{len(pan):02d}{pan}".encode("ascii")
