"""Network link dialect (spec/network-link.md): switch ⇄ card network.

Frame body (after the 4-byte ASCII length the framer strips)::

    | HEADER 46 | MTI 4 ASCII | BITMAP 16 (bit 1 always set) | fields 2..128 |

Header: 0x2E (header length), 0x02 (version), total length 4 ASCII digits
(header + MTI + bitmap + fields), destination an11, source an11 (institution
codes, left-aligned space-padded), reserved 3, batch 1, transaction info 8,
user info 1, reject code 5.

Field formats (ASCII data and ASCII LL / LLL prefixes unless marked b; lengths
of b fields count bytes).  Where network-link.md gives no size the ISO
8583:1987 / UnionPay CUPS size is used (marked *):

====  =============================  ==========  =====
F     name                           format      mask
====  =============================  ==========  =====
2     PAN                            n..19 LL    6+4
3     processing code                n6
4     amount, minor units            n12
7     transmission date-time         n10
11    switch trace number            n6
12    local time hhmmss              n6
13    local date MMDD                n4
14    expiry YYMM                    n4
15    settlement date MMDD           n4
18    merchant category code         n4
22    POS entry mode                 n3
23    card sequence number           n3
25    POS condition code             n2
26    PIN capture code               n2
28    transaction fee (C/D + n8) *   an9
32    acquirer institution id        n..11 LL
33    forwarding institution id      n..11 LL
35    track 2                        z..37 LL    hidden
36    track 3                        z..104 LLL  hidden
37    retrieval reference number     an12
38    authorization code             an6
39    response code                  an2
41    terminal id                    ans8
42    merchant id                    ans15
43    merchant name and location     ans40
44    additional response data *     an..25 LL
48    key exchange data *            ans..512 LLL  hidden
49    currency                       an3
52    PIN block                      b8          hidden
53    security control               n16
54    balances *                     an..40 LLL
55    IC card data                   b..255 LLL  hidden
60    reserved (terminal 60.1 ...)   ans..100 LLL
61    cardholder auth. info *        ans..200 LLL
63    reserved *                     ans..512 LLL
70    network management code        n3
90    original data elements         n42
96    message security code *        b8          hidden
100   receiving institution id       n..11 LL
102   account identification 1 *     ans..28 LL  6+4
103   account identification 2 *     ans..28 LL  6+4
128   MAC                            b8          hidden
====  =============================  ==========  =====

Fixed fields must have exactly their length (callers zero-fill numbers);
z fields carry ``=`` as is.  ``decode_network`` raises only
``NetworkDecodeError`` (a DecodeError whose ``partial`` holds the header and
MTI when those decoded).

Every field of this dialect is ASCII text or raw bytes, and a field that
decodes re-encodes to exactly the bytes it arrived in.  ``decode_network``
therefore keeps each field's received wire text (``NetworkFrame.texts``), so
a received message's MAB is built from its bytes without re-encoding
(:meth:`EncodedNetworkMessage.received`); its own loop over the field table
gives the values, errors and offsets ``NETWORK.decode_fields`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from posp.errors import DecodeError, EncodeError
from posp.iso8583.dialect import Dialect
from posp.iso8583.message import FieldValue, Mask, Message
from posp.iso8583.spec import FieldSpec, Fmt, Wire

_N, _AN, _ANS, _B, _Z = Fmt.N, Fmt.AN, Fmt.ANS, Fmt.B, Fmt.Z


def _f(
    number: int, name: str, fmt: Fmt, length: int, prefix: int = 0, mask: Mask = Mask.CLEAR
) -> FieldSpec:
    data = Wire.BINARY if fmt is _B else Wire.ASCII
    return FieldSpec(number, name, fmt, length, prefix, data, Wire.ASCII, mask=mask)


_HIDE, _PAN = Mask.HIDE, Mask.PAN

NETWORK_FIELDS: Final[tuple[FieldSpec, ...]] = (
    _f(2, "PAN", _N, 19, 2, _PAN),
    _f(3, "Processing code", _N, 6),
    _f(4, "Amount, minor units", _N, 12),
    _f(7, "Transmission date-time MMDDhhmmss", _N, 10),
    _f(11, "Switch trace number", _N, 6),
    _f(12, "Local time hhmmss", _N, 6),
    _f(13, "Local date MMDD", _N, 4),
    _f(14, "Expiry YYMM", _N, 4),
    _f(15, "Settlement date MMDD", _N, 4),
    _f(18, "Merchant category code", _N, 4),
    _f(22, "POS entry mode", _N, 3),
    _f(23, "Card sequence number", _N, 3),
    _f(25, "POS condition code", _N, 2),
    _f(26, "PIN capture code", _N, 2),
    _f(28, "Transaction fee", _AN, 9),
    _f(32, "Acquirer institution id", _N, 11, 2),
    _f(33, "Forwarding institution id", _N, 11, 2),
    _f(35, "Track 2", _Z, 37, 2, _HIDE),
    _f(36, "Track 3", _Z, 104, 3, _HIDE),
    _f(37, "Retrieval reference number", _AN, 12),
    _f(38, "Authorization code", _AN, 6),
    _f(39, "Response code", _AN, 2),
    _f(41, "Terminal id", _ANS, 8),
    _f(42, "Merchant id", _ANS, 15),
    _f(43, "Merchant name and location", _ANS, 40),
    _f(44, "Additional response data", _AN, 25, 2),
    _f(48, "Key exchange data", _ANS, 512, 3, _HIDE),
    _f(49, "Currency", _AN, 3),
    _f(52, "PIN block", _B, 8, mask=_HIDE),
    _f(53, "Security control", _N, 16),
    _f(54, "Balances", _AN, 40, 3),
    _f(55, "IC card data", _B, 255, 3, _HIDE),
    _f(60, "Reserved", _ANS, 100, 3),
    _f(61, "Cardholder authentication information", _ANS, 200, 3),
    _f(63, "Reserved", _ANS, 512, 3),
    _f(70, "Network management code", _N, 3),
    _f(90, "Original data elements", _N, 42),
    _f(96, "Message security code", _B, 8, mask=_HIDE),
    _f(100, "Receiving institution id", _N, 11, 2),
    _f(102, "Account identification 1", _ANS, 28, 2, _PAN),
    _f(103, "Account identification 2", _ANS, 28, 2, _PAN),
    _f(128, "MAC", _B, 8, mask=_HIDE),
)

NETWORK: Final = Dialect("network", NETWORK_FIELDS, secondary_bitmap=True)

HEADER_BYTES: Final = 46
_HEADER_FLAGS: Final = b"\x2e\x02"  # header length 46, version 2
# (attribute, width) of the ASCII header fields after the total length.
_HEADER_LAYOUT: Final = (
    ("destination", 11),
    ("source", 11),
    ("reserved", 3),
    ("batch", 1),
    ("txn_info", 8),
    ("user_info", 1),
    ("reject_code", 5),
)
_MTI_END: Final = HEADER_BYTES + 4


@dataclass(slots=True)
class NetworkHeader:
    """The 46-byte header's variable part; ids are stored without their padding."""

    destination: str
    source: str
    reserved: str = "000"
    batch: str = "0"
    txn_info: str = "00000000"
    user_info: str = "0"
    reject_code: str = "00000"

    def swapped(self) -> NetworkHeader:
        """The header of a reply: destination and source exchanged."""
        return NetworkHeader(
            self.source,
            self.destination,
            self.reserved,
            self.batch,
            self.txn_info,
            self.user_info,
            self.reject_code,
        )


@dataclass(slots=True)
class NetworkFrame:
    """A header and a message.  ``texts`` holds, for a frame from
    :func:`decode_network`, each field's wire text as received (length prefix
    included): what ``NETWORK.encode_field`` gives for the decoded value, valid
    while the message is not changed.  Empty for frames built by hand; never
    compared or shown (it carries PIN blocks and tracks)."""

    header: NetworkHeader
    message: Message
    texts: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)


class NetworkDecodeError(DecodeError):
    """A network frame that does not decode; ``partial`` as for the terminal link."""

    def __init__(
        self,
        reason: str,
        *,
        field: int | None = None,
        offset: int = 0,
        partial: NetworkFrame | None = None,
    ) -> None:
        super().__init__(reason, field=field, offset=offset)
        self.partial = partial


def _encode_header(header: NetworkHeader, total_bytes: int) -> bytes:
    parts = [_HEADER_FLAGS, b"%04d" % total_bytes]
    for name, width in _HEADER_LAYOUT:
        value = getattr(header, name)
        if type(value) is not str:
            raise EncodeError(f"header {name} must be str")
        # Institution ids are space-padded; the other header fields must fit exactly.
        text = value.ljust(width) if name in ("destination", "source") else value
        if len(text) != width or not text.isascii():
            raise EncodeError(f"header {name} must be {width} ASCII characters")
        parts.append(text.encode("ascii"))
    return b"".join(parts)


def _decode_header(body: bytes) -> NetworkHeader:
    if body[:2] != _HEADER_FLAGS:
        raise NetworkDecodeError("header must start with 2E 02", offset=0)
    total = body[2:6]
    if not total.isdigit() or int(total) != len(body):
        raise NetworkDecodeError("header total length does not match the frame", offset=2)
    global _last_decoded_header
    raw = body[_TOTAL_END:HEADER_BYTES]
    cached = _last_decoded_header
    if raw != cached[0]:  # a peer sends every frame under the same header
        if not raw.isascii():
            raise NetworkDecodeError("header is not ASCII", offset=6)
        values = []
        pos = 0
        for _name, width in _HEADER_LAYOUT:
            values.append(raw[pos : pos + width].decode("ascii"))
            pos += width
        values[0] = values[0].rstrip(" ")
        values[1] = values[1].rstrip(" ")
        cached = _last_decoded_header = (raw, tuple(values))
    return NetworkHeader(*cached[1])


#: (raw header bytes after the total length, their decoded values) of the last
#: header decoded; each frame still gets its own NetworkHeader.
_last_decoded_header: tuple[bytes, tuple[str, ...]] = (b"", ())
_TOTAL_END: Final = 6


def _header_tail(header: NetworkHeader) -> bytes:
    """The header's bytes after the total length, encoded once per distinct header
    (cached by value: a link sends every request under one header, the simulator
    answers under the same swapped one)."""
    global _last_encoded_header
    key = (
        header.destination, header.source, header.reserved, header.batch,
        header.txn_info, header.user_info, header.reject_code,
    )  # fmt: skip
    cached = _last_encoded_header
    if cached[0] != key:
        cached = _last_encoded_header = (key, _encode_header(header, 0)[_TOTAL_END:])
    return cached[1]


#: (header values, their bytes after the total length) of the last header encoded.
_last_encoded_header: tuple[tuple[object, ...], bytes] = ((), b"")


# --- field decoding that keeps the wire texts ----------------------------------
# What a field's bytes must be: any bytes (b), ASCII text (an, ans), ASCII digits
# (n), ASCII digits and '=' (z).
_BYTES, _TEXT, _DIGITS, _TRACK = 0, 1, 2, 3
_KINDS: Final = {_B: _BYTES, _AN: _TEXT, _ANS: _TEXT, _N: _DIGITS, _Z: _TRACK}
_CHECK_NAMES: Final = {_DIGITS: "n", _TRACK: "z"}
_UNDEFINED: Final = -1  # in place of the prefix digits: a number the table lacks
# (number, prefix digits or _UNDEFINED, length or maximum, kind) of one field.
_FieldRow = tuple[int, int, int, int]
_SPECS: Final = {spec.number: spec for spec in NETWORK_FIELDS}


def _field_row(n: int) -> _FieldRow:
    spec = _SPECS.get(n)
    if spec is None:
        return (n, _UNDEFINED, 0, _BYTES)
    return (n, spec.prefix_digits, spec.length, _KINDS[spec.fmt])


#: Bitmap byte index → byte value → the rows of the fields that byte flags.
_BITMAP_ROWS: Final[tuple[tuple[tuple[_FieldRow, ...], ...], ...]] = tuple(
    tuple(
        tuple(
            _field_row(byte_index * 8 + bit + 1)
            for bit in range(8)
            if value & (0x80 >> bit) and byte_index * 8 + bit > 0
        )
        for value in range(256)
    )
    for byte_index in range(16)
)


def _decode_fields(
    buf: bytes, pos: int, fields: dict[int, FieldValue], texts: dict[int, bytes]
) -> int:
    """``NETWORK.decode_fields`` (same values, same DecodeErrors and offsets) that also
    keeps each field's wire text in ``texts``; the end offset."""
    bitmap = buf[pos : pos + 16]
    if len(bitmap) != 16:
        raise DecodeError("truncated bitmap", offset=pos)
    if not bitmap[0] & 0x80:
        raise DecodeError("bitmap bit 1 must be set", offset=pos)
    pos += 16
    buf_end = len(buf)
    for rows, flags in zip(_BITMAP_ROWS, bitmap, strict=True):
        for n, prefix, length, kind in rows[flags]:
            start = pos
            if prefix:
                if prefix == _UNDEFINED:
                    raise DecodeError("not defined in the network dialect", field=n, offset=pos)
                raw = buf[pos : pos + prefix]
                if len(raw) != prefix or not raw.isdigit():
                    raise DecodeError("length prefix is not ASCII digits", field=n, offset=start)
                size = int(raw)
                if size > length:
                    raise DecodeError(
                        f"length {size} exceeds maximum {length}", field=n, offset=start
                    )
                pos += prefix
                end = pos + size
            else:
                size = length
                end = pos + length
            if end > buf_end:
                raise DecodeError("truncated", field=n, offset=start)
            data = buf[pos:end]
            if kind == _BYTES:
                fields[n] = data
            else:
                try:
                    text = data.decode("ascii")
                except UnicodeDecodeError:
                    raise DecodeError("truncated or malformed", field=n, offset=start) from None
                if kind != _TEXT and size:
                    checked = text if kind == _DIGITS else text.replace("=", "")
                    if not checked.isdigit():
                        reason = f"not {_CHECK_NAMES[kind]} characters"
                        raise DecodeError(reason, field=n, offset=start)
                fields[n] = text
            texts[n] = buf[start:end] if prefix else data
            pos = end
    return pos


def decode_network(body: bytes) -> NetworkFrame:
    """Decode a frame body (after the 4-byte length); NetworkDecodeError if malformed.
    The frame's ``texts`` hold each field's bytes as received."""
    if len(body) < _MTI_END:
        raise NetworkDecodeError("truncated before the bitmap", offset=len(body))
    header = _decode_header(body)
    mti_bytes = body[HEADER_BYTES:_MTI_END]
    if not mti_bytes.isdigit():
        raise NetworkDecodeError("MTI is not 4 ASCII digits", offset=HEADER_BYTES)
    fields: dict[int, FieldValue] = {}
    texts: dict[int, bytes] = {}
    frame = NetworkFrame(header, Message(mti_bytes.decode("ascii"), fields), texts)
    try:
        end = _decode_fields(body, _MTI_END, fields, texts)
    except DecodeError as exc:
        raise NetworkDecodeError(
            exc.reason, field=exc.field, offset=exc.offset, partial=frame
        ) from None
    if end != len(body):
        raise NetworkDecodeError(
            f"{len(body) - end} bytes after the last field", offset=end, partial=frame
        )
    return frame


def encode_network(frame: NetworkFrame) -> bytes:
    """Encode a frame body (without the 4-byte length), header total length filled."""
    mti = frame.message.mti
    if type(mti) is not str or len(mti) != 4 or not (mti.isdigit() and mti.isascii()):
        raise EncodeError("MTI must be 4 digits")
    return _with_header(
        frame.header, mti.encode("ascii") + NETWORK.encode_fields(frame.message.fields)
    )


def _with_header(header: NetworkHeader, rest: bytes) -> bytes:
    """The frame body: ``header`` (total length filled in) before MTI, bitmap and fields."""
    total = HEADER_BYTES + len(rest)
    if total > 9999:
        raise EncodeError(f"frame of {total} bytes exceeds 9999")
    return b"%b%04d%b%b" % (_HEADER_FLAGS, total, _header_tail(header), rest)


# network-link.md §5: the MAB fields, in order; key exchange messages add 53, 70, 100.
MAB_FIELDS: Final = (2, 3, 4, 7, 11, 18, 25, 28, 32, 33, 38, 39, 41, 42, 90, 102, 103)
KEY_EXCHANGE_MAB_FIELDS: Final = tuple(sorted((*MAB_FIELDS, 53, 70, 100)))
_F90_MAB_CHARS: Final = 20
_KEY_EXCHANGE_CODE: Final = "101"


def is_key_exchange(message: Message) -> bool:
    """0800/0810 with F70 = 101 (network-link.md §4)."""
    return message.mti.startswith("08") and message.fields.get(70) == _KEY_EXCHANGE_CODE


class EncodedNetworkMessage:
    """A network message's fields encoded ONCE, for both its MAB and its frame.

    Invariant: ``mab()`` equals :func:`network_mab` of the message and ``body()``
    equals :func:`encode_network` of the frame, as long as fields change only
    through :meth:`set` (which updates the message too).  EncodeError names the
    first invalid field, as the frame encoder would.

    ``reuse``: an encoded message whose texts may be taken over for the fields
    holding equal values of the same type (a response echoing its request's
    fields, a request sent after its early MAC) instead of being encoded again.
    Valid field values are immutable ``str`` or ``bytes`` and a field's text
    depends on its number and value alone, so equal values have equal texts;
    any other type is left to the encoder, which refuses it."""

    __slots__ = ("message", "texts")

    def __init__(
        self,
        message: Message,
        *,
        reuse: EncodedNetworkMessage | None = None,
        arrived_texts: dict[int, bytes] | None = None,
    ) -> None:
        """``arrived_texts`` (for :meth:`received`): the texts the message's frame
        arrived in, taken as they are when they hold exactly its fields."""
        if reuse is not None and arrived_texts is not None:
            raise TypeError("EncodedNetworkMessage: reuse and arrived_texts exclude each other")
        mti = message.mti
        if type(mti) is not str or len(mti) != 4 or not (mti.isdigit() and mti.isascii()):
            raise EncodeError("MTI must be 4 digits")
        self.message = message
        if arrived_texts is not None and arrived_texts.keys() == message.fields.keys():
            self.texts = arrived_texts
            return
        encode = NETWORK.encode_field
        if reuse is None:
            self.texts = {n: encode(n, value) for n, value in sorted(message.fields.items())}
            return
        known_values, known_texts = reuse.message.fields, reuse.texts
        texts: dict[int, bytes] = {}
        for n, value in sorted(message.fields.items()):
            text = known_texts.get(n)
            known = known_values.get(n)
            # Same type and equal (str == str short-cuts on identity): a bytearray
            # or a str subclass equal to a valid value is still checked by encode.
            texts[n] = (
                text
                if text is not None and type(known) is type(value) and known == value
                else encode(n, value)
            )
        self.texts = texts

    @classmethod
    def received(cls, frame: NetworkFrame) -> EncodedNetworkMessage:
        """The message of a frame from :func:`decode_network` with the texts it
        arrived in, nothing encoded again (the frame's message must not have been
        changed since).  A frame without texts for every field is encoded."""
        return cls(frame.message, arrived_texts=frame.texts)

    def set(self, n: int, value: FieldValue) -> None:
        """Set field ``n`` in the message and its encoded text."""
        self.texts[n] = NETWORK.encode_field(n, value)
        self.message.fields[n] = value

    def mab(self, *, key_exchange: bool | None = None) -> bytes:
        """:func:`network_mab` from the texts already encoded."""
        if key_exchange is None:
            key_exchange = is_key_exchange(self.message)
        texts = self.texts
        parts = [self.message.mti.encode("ascii")]
        for n in KEY_EXCHANGE_MAB_FIELDS if key_exchange else MAB_FIELDS:
            text = texts.get(n)
            if text is not None:
                parts.append(text[:_F90_MAB_CHARS] if n == 90 else text)
        return b" ".join(parts)

    def body(self, header: NetworkHeader) -> bytes:
        """:func:`encode_network` of ``NetworkFrame(header, message)``."""
        return _with_header(
            header, self.message.mti.encode("ascii") + NETWORK.join_encoded(self.texts)
        )


def network_mab(message: Message, *, key_exchange: bool | None = None) -> bytes:
    """The MAC block of network-link.md §5 as ASCII bytes: MTI and the listed
    fields present, each as its wire text (variable fields with their length
    prefix), joined by one space.  ``key_exchange`` defaults to
    ``is_key_exchange(message)``.  EncodeError if a listed field is invalid."""
    if key_exchange is None:
        key_exchange = is_key_exchange(message)
    numbers = KEY_EXCHANGE_MAB_FIELDS if key_exchange else MAB_FIELDS
    fields, mti = message.fields, message.mti
    if len(mti) != 4 or not (mti.isdigit() and mti.isascii()):
        raise EncodeError("MTI must be 4 digits")
    parts = [mti.encode("ascii")]
    for n in numbers:
        if n in fields:
            text = NETWORK.encode_field(n, fields[n])
            parts.append(text[:_F90_MAB_CHARS] if n == 90 else text)
    return b" ".join(parts)
