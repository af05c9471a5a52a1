"""Terminal link dialect (spec/terminal-link.md §1-2): POS terminal ⇄ switch.

Frame body (after the 2-byte length the framer strips)::

    | TPDU 5 | HEADER 6 (12 BCD digits) | MTI 2 BCD | BITMAP 8 | fields 2..64 |

Invariants:

* The TPDU's first byte is 0x60; bitmap bit 1 is never set.
* n / z fields are BCD with BCD LL (1 byte) / LLL (2 bytes) prefixes counting
  digits; an / ans fields are ASCII, b fields raw, their prefixes count bytes.
* Odd digit counts take one pad nibble: 0 is sent, any nibble is accepted.
  F22 and variable n / z fields are left-aligned, other fixed n fields right.
* F64 is the MAC as 8 ASCII hex characters, carried as ``bytes``.
* ``decode_terminal`` raises only ``TerminalDecodeError``; when TPDU, header
  and MTI decoded, ``.partial`` holds them plus the fields decoded so far, so
  the switch can still answer 30.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from posp.errors import DecodeError, EncodeError
from posp.iso8583.dialect import Dialect
from posp.iso8583.message import FieldValue, Mask, Message
from posp.iso8583.spec import Align, FieldSpec, Fmt, Wire

_N, _AN, _ANS, _B, _Z = Fmt.N, Fmt.AN, Fmt.ANS, Fmt.B, Fmt.Z
_BCD, _ASC, _BIN = Wire.BCD, Wire.ASCII, Wire.BINARY
_L, _R = Align.LEFT, Align.RIGHT


def _n(number: int, name: str, length: int, prefix: int = 0, align: Align = _R) -> FieldSpec:
    return FieldSpec(number, name, _N, length, prefix, _BCD, _BCD, align)


def _z(number: int, name: str, length: int, prefix: int) -> FieldSpec:
    return FieldSpec(number, name, _Z, length, prefix, _BCD, _BCD, _L, Mask.HIDE)


def _a(number: int, name: str, fmt: Fmt, length: int, prefix: int = 0) -> FieldSpec:
    return FieldSpec(number, name, fmt, length, prefix, _ASC, _BCD)


def _b(number: int, name: str, length: int, prefix: int = 0, mask: Mask = Mask.HIDE) -> FieldSpec:
    return FieldSpec(number, name, _B, length, prefix, _BIN, _BCD, mask=mask)


TERMINAL_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec(2, "PAN", _N, 19, 2, _BCD, _BCD, _L, Mask.PAN),
    _n(3, "Processing code", 6),
    _n(4, "Amount, minor units", 12),
    _n(11, "Trace number (STAN)", 6),
    _n(12, "Local time hhmmss", 6),
    _n(13, "Local date MMDD", 4),
    _n(14, "Expiry YYMM", 4),
    _n(15, "Settlement date MMDD", 4),
    _n(22, "POS entry mode", 3, align=_L),
    _n(23, "Card sequence number", 3, align=_R),
    _n(25, "POS condition code", 2),
    _n(26, "PIN capture code", 2),
    _n(32, "Acquirer institution id", 11, 2, _L),
    _z(35, "Track 2", 37, 2),
    _z(36, "Track 3", 104, 3),
    _a(37, "Retrieval reference number", _AN, 12),
    _a(38, "Authorization code", _AN, 6),
    _a(39, "Response code", _AN, 2),
    _a(41, "Terminal id", _ANS, 8),
    _a(42, "Merchant id", _ANS, 15),
    _a(44, "Additional response data", _AN, 25, 2),
    # Batch-upload records carry full PANs, so F48 shows its length only.
    FieldSpec(48, "Additional data", _N, 322, 3, _BCD, _BCD, _L, Mask.HIDE),
    _a(49, "Currency", _AN, 3),
    _b(52, "PIN block", 8),
    _n(53, "Security control", 16),
    _a(54, "Balances", _AN, 20, 3),
    _b(55, "IC card data", 255, 3),
    _a(59, "Terminal identity (TMS)", _ANS, 999, 3),
    _n(60, "Message info", 17, 3, _L),
    _n(61, "Original message data", 29, 3, _L),
    _b(62, "Reserved (key block / device serial)", 512, 3),
    _a(63, "Reserved (operator / card organisation)", _ANS, 163, 3),
    _b(64, "MAC", 8),
)

TERMINAL: Final = Dialect("terminal", TERMINAL_FIELDS, secondary_bitmap=False)

_TPDU_ID: Final = 0x60
_PREAMBLE_BYTES: Final = 5 + 6 + 2  # TPDU, header, MTI
_MAB_START: Final = 5 + 6  # the MAB starts at the MTI
_MAC_BYTES: Final = 8


@dataclass(slots=True)
class TerminalFrame:
    """One terminal-link message: TPDU (5 bytes, 0x60 first), header (12 digits)."""

    tpdu: bytes
    header: str
    message: Message


class TerminalDecodeError(DecodeError):
    """A terminal frame that does not decode.  ``partial`` carries TPDU, header,
    MTI and the fields decoded before the failure when those decoded, else None."""

    def __init__(
        self,
        reason: str,
        *,
        field: int | None = None,
        offset: int = 0,
        partial: TerminalFrame | None = None,
    ) -> None:
        super().__init__(reason, field=field, offset=offset)
        self.partial = partial


def decode_terminal(body: bytes) -> TerminalFrame:
    """Decode a frame body (after the 2-byte length); TerminalDecodeError if malformed."""
    if len(body) < _PREAMBLE_BYTES:
        raise TerminalDecodeError("truncated before the bitmap", offset=len(body))
    if body[0] != _TPDU_ID:
        raise TerminalDecodeError("TPDU must start with 60", offset=0)
    header = body[5:11].hex()
    if not header.isdigit():
        raise TerminalDecodeError("header is not BCD", offset=5)
    mti = body[11:13].hex()
    if not mti.isdigit():
        raise TerminalDecodeError("MTI is not BCD", offset=11)
    fields: dict[int, FieldValue] = {}
    frame = TerminalFrame(body[:5], header, Message(mti, fields))
    try:
        end = TERMINAL.decode_fields(body, _PREAMBLE_BYTES, fields)
    except DecodeError as exc:
        raise TerminalDecodeError(
            exc.reason, field=exc.field, offset=exc.offset, partial=frame
        ) from None
    if end != len(body):
        raise TerminalDecodeError(
            f"{len(body) - end} bytes after the last field", offset=end, partial=frame
        )
    return frame


def encode_terminal(frame: TerminalFrame) -> bytes:
    """Encode a frame body (without the 2-byte length); EncodeError names the field."""
    tpdu, header, mti = frame.tpdu, frame.header, frame.message.mti
    if type(tpdu) is not bytes or len(tpdu) != 5 or tpdu[0] != _TPDU_ID:
        raise EncodeError("TPDU must be 5 bytes starting with 60")
    if type(header) is not str or len(header) != 12 or not (header.isdigit() and header.isascii()):
        raise EncodeError("header must be 12 digits")
    if type(mti) is not str or len(mti) != 4 or not (mti.isdigit() and mti.isascii()):
        raise EncodeError("MTI must be 4 digits")
    body = TERMINAL.encode_fields(frame.message.fields)
    return tpdu + bytes.fromhex(header + mti) + body


def terminal_mab(body: bytes) -> bytes:
    """The MAC block: from the MTI up to the byte before F64, which must be the
    last field of ``body`` (a frame body as given to / returned by the codec)."""
    bitmap_end = _PREAMBLE_BYTES + TERMINAL.bitmap_bytes
    if len(body) < bitmap_end + _MAC_BYTES or not body[bitmap_end - 1] & 0x01:
        raise DecodeError("frame carries no F64", field=64, offset=len(body))
    return body[_MAB_START:-_MAC_BYTES]


def reply_tpdu(tpdu: bytes) -> bytes:
    """The reply's TPDU: the request's with destination and source swapped."""
    return tpdu[:1] + tpdu[3:5] + tpdu[1:3]


def response_header(header: str, processing: str = "0") -> str:
    """The request header echoed with digit 6 (processing requirement) set."""
    return header[:5] + processing + header[6:]
