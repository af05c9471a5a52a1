"""A simulated PBOC/UICS chip card and its side of the EMV dialogue (terminal-link.md §8).

The card is keyed from a lab chip card file (:func:`parse_chip_cards`): each
card's UDKs are derived from its issuer's clear IMK-AC / IMK-SMI with EMV
option A, exactly as the issuer's HSM derives them from the IMKs under its LMK.

Invariants:
* Pure: no I/O but :func:`load_chip_cards`; nothing is logged; ``repr`` of a
  card or record shows the masked PAN only, never a key.
* The ATC goes up by one at every first GENERATE AC and is never reused.
* The first GENERATE AC answers an ARQC (CID ``80``, cryptogram version 01);
  the request F55 holds §8's tags in §8's order.
* The second GENERATE AC answers a TC (CID ``40``) only when the host
  approved, tag 91 is present and its ARPC verifies; otherwise an AAC (CID
  ``00``), after which the terminal reverses an approved transaction (06).
* An issuer script command is run only when its MAC verifies under the
  card's script session key; DF31 reports each script (``20`` + id done,
  ``1n`` + id failed at command n).  A response F55 that does not decode is
  treated as no issuer authentication at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posp.crypto.emv import (
    AC_DATA_TAGS,
    SCRIPT_MAC_BYTES,
    CardKeys,
    Scheme,
    cvr_of_iad,
    derive_udk,
    pan_psn_block,
    script_mac,
    script_session_key,
    session_key,
)
from posp.errors import DecodeError
from posp.iso8583.message import mask_pan
from posp.iso8583.tlv import (
    F55,
    ONLINE_REQUEST_TAGS,
    F55Template,
    Tlv,
    build_f55,
    decode_f55,
)

CHIP_FILE_HEADER = "pan,psn,imk_ac,imk_smi,atc"
#: The lab chip card file shipped for the demo CUP cards (test IMKs in clear).
DEMO_CHIP_CARDS = Path(__file__).with_name("demo_chip_cards.csv")
CID_ARQC, CID_TC, CID_AAC = 0x80, 0x40, 0x00
_CVR_FIRST = 0xA0  # CVR byte 2: ARQC in the first GENERATE AC, second not yet requested
_CVR_SECOND = {CID_TC: 0x60, CID_AAC: 0x20}
_CVR_ISSUER_AUTH_FAILED = 0x04  # CVR byte 3
_CUP_DEBIT_AID = bytes.fromhex("A000000333010101")
_APPROVED_ARC = b"00"


@dataclass(frozen=True, slots=True)
class ChipCardRecord:
    """One line of the lab chip card file: clear issuer keys (lab data only)."""

    pan: str
    psn: str
    imk_ac: bytes
    imk_smi: bytes
    atc: int

    def __repr__(self) -> str:
        return f"ChipCardRecord({mask_pan(self.pan)}, atc={self.atc})"


def parse_chip_cards(text: str) -> list[ChipCardRecord]:
    """The lab chip card file: a ``pan,psn,imk_ac,imk_smi,atc`` CSV header, then one card
    a line (PAN 13-19 digits, PSN 2 digits, IMKs 32H, ATC 0-65535); ``#`` lines are
    comments.  A bad line raises ValueError naming the line and column, never a value."""
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    rows = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not rows or rows[0][1].replace(" ", "") != CHIP_FILE_HEADER:
        raise ValueError(f"chip card file: the first line must be {CHIP_FILE_HEADER}")
    return [_record(n, line) for n, line in rows[1:]]


def _record(n: int, line: str) -> ChipCardRecord:
    cells = [cell.strip() for cell in line.split(",")]
    if len(cells) != 5:
        raise ValueError(f"chip card file line {n}: 5 columns expected")
    pan, psn, imk_ac, imk_smi, atc = cells
    checks = (
        ("pan", pan.isdigit() and 13 <= len(pan) <= 19, "13-19 digits"),
        ("psn", psn.isdigit() and len(psn) == 2, "2 digits"),
        ("imk_ac", _is_key(imk_ac), "32 hex digits"),
        ("imk_smi", _is_key(imk_smi), "32 hex digits"),
        ("atc", atc.isdigit() and int(atc) <= 0xFFFF, "0-65535"),
    )
    for column, ok, what in checks:
        if not ok:
            raise ValueError(f"chip card file line {n}, column {column}: must be {what}")
    return ChipCardRecord(pan, psn, bytes.fromhex(imk_ac), bytes.fromhex(imk_smi), int(atc))


def _is_key(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text)


def format_chip_cards(records: list[ChipCardRecord]) -> str:
    """The file text for ``records`` (to save the cards' ATCs after a run)."""
    lines = [CHIP_FILE_HEADER] + [
        f"{r.pan},{r.psn},{r.imk_ac.hex().upper()},{r.imk_smi.hex().upper()},{r.atc}"
        for r in records
    ]
    return "\n".join(lines) + "\n"


def load_chip_cards(path: str | Path) -> list[ChipCardRecord]:
    return parse_chip_cards(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class TerminalChipData:
    """What the terminal feeds the card for one transaction."""

    amount_minor: int
    date_yymmdd: str
    un: bytes  # 9F37, 4 random bytes
    txn_type: str = "00"  # 9C: 00 goods, 03 pre-auth, 31 balance
    sequence: int = 1  # 9F41
    tvr: bytes = bytes(5)
    ifd_serial: str = "POSP0001"
    other_minor: int = 0


#: The terminal's (and the card's AIP 82) tags that are the same in every request.
_CONSTANT_TAGS: dict[str, bytes] = {
    "5F2A": bytes.fromhex("0156"),
    "9F1A": bytes.fromhex("0156"),
    "9F33": bytes.fromhex("E0E1C8"),
    "9F34": bytes.fromhex("420300"),  # enciphered PIN verified online
    "9F35": bytes.fromhex("22"),
    "84": _CUP_DEBIT_AID,
    "9F09": bytes.fromhex("0030"),
    "82": bytes.fromhex("7C00"),
}
#: What the second GENERATE AC changes: the cryptogram, its CID and the IAD (CVR).
_AC_TAGS = ("9F26", "9F27", "9F10")
#: The request F55 in §8's order: the three AC tags, then the rest, which the TC
#: upload's F55 repeats byte for byte (built once per transaction).
_AC_HEAD = F55Template(ONLINE_REQUEST_TAGS[: len(_AC_TAGS)], {})
_REQUEST_TAIL = F55Template(ONLINE_REQUEST_TAGS[len(_AC_TAGS) :], _CONSTANT_TAGS)
if _AC_HEAD.order != _AC_TAGS or set(_AC_TAGS) & set(_REQUEST_TAIL.order):
    raise RuntimeError("§8's request tags must start with 9F26 9F27 9F10")


def _variable_tags(t: TerminalChipData) -> dict[str, bytes]:
    return {
        "9F37": t.un,
        "95": t.tvr,
        "9A": bytes.fromhex(t.date_yymmdd),
        "9C": bytes.fromhex(t.txn_type),
        "9F02": bytes.fromhex(f"{t.amount_minor:012d}"),
        "9F03": bytes.fromhex(f"{t.other_minor:012d}"),
        "9F1E": t.ifd_serial.encode("ascii")[:8].ljust(8, b" "),
        "9F41": bytes.fromhex(f"{t.sequence % 10**8:08d}"),
    }


def terminal_tags(t: TerminalChipData) -> dict[str, bytes]:
    """The terminal's tags of §8's online request (the card adds 9F26 9F27 9F10 9F36 82)."""
    tags = _variable_tags(t) | _CONSTANT_TAGS
    del tags["82"]
    return tags


@dataclass(frozen=True, slots=True)
class SecondAc:
    """The outcome of the second GENERATE AC."""

    cid: int  # CID_TC or CID_AAC
    cryptogram: bytes
    arpc_ok: bool
    script_results: bytes  # DF31 value, b"" when the host sent no script
    f55: bytes  # the request's tags with this cryptogram: the TC upload's F55

    @property
    def approved(self) -> bool:
        return self.cid == CID_TC

    def advice_f55(self) -> bytes:
        """The script result advice's F55 (0620, 60.3 951): DF31, then the card's
        cryptogram, CID and ATC of this transaction."""
        upload = decode_f55(self.f55)
        pairs = [("DF31", self.script_results)]
        pairs += [(tag, upload.get(tag) or b"") for tag in ("9F26", "9F27", "9F36")]
        return build_f55(pairs)


@dataclass(slots=True)
class _Pending:
    """A first GENERATE AC awaiting its second: the session keys, the ARQC, the ATC,
    the AC data without the CVR and the request F55 after the AC tags (both the same
    for the second AC)."""

    keys: CardKeys
    arqc: bytes
    atc: bytes
    ac_data_head: bytes
    f55_tail: bytes


class ChipCard:
    """One simulated card: derives its card keys once, counts its ATC."""

    __slots__ = ("_pending", "_udk", "_udk_smi", "atc", "imk_ac", "pan", "psn")

    def __init__(self, record: ChipCardRecord) -> None:
        self.pan, self.psn, self.atc = record.pan, record.psn, record.atc
        self.imk_ac = record.imk_ac
        self._udk_smi = derive_udk(record.imk_smi, pan_psn_block(record.pan, record.psn))
        self._pending: _Pending | None = None
        self._udk: tuple[bytes, bytes] = (b"", b"")  # (IMK-AC, the card's UDK from it)

    def __repr__(self) -> str:
        return f"ChipCard({mask_pan(self.pan)}, atc={self.atc})"

    def _udk_ac(self) -> bytes:
        """The card's AC key, derived once per IMK-AC (a test may swap the IMK)."""
        imk, udk = self._udk
        if imk != self.imk_ac:
            udk = derive_udk(self.imk_ac, pan_psn_block(self.pan, self.psn))
            self._udk = (self.imk_ac, udk)
        return udk

    @property
    def in_use(self) -> bool:
        """A first GENERATE AC awaits its second: the card is in a terminal's reader."""
        return self._pending is not None

    def abandon(self) -> None:
        """The host never answered (timeout, line fault): the card leaves the reader
        without a second GENERATE AC; its ATC stays counted."""
        self._pending = None

    def first_generate_ac(self, terminal: TerminalChipData) -> bytes:
        """Count the ATC, compute the ARQC and return the online request's F55."""
        self.atc = (self.atc + 1) & 0xFFFF
        atc = self.atc.to_bytes(2, "big")
        udk = self._udk_ac()
        keys = CardKeys(Scheme.PBOC_V01, udk, session_key(udk, Scheme.PBOC_V01, atc))
        tags = _variable_tags(terminal)
        tags["9F36"] = atc
        tail = _REQUEST_TAIL.build(tags)
        tags |= _CONSTANT_TAGS
        head = b"".join([tags[tag] for tag in AC_DATA_TAGS])  # ac_data() without the CVR
        iad = _iad(_CVR_FIRST, 0)
        arqc = keys.cryptogram(head + cvr_of_iad(iad))
        self._pending = _Pending(keys, arqc, atc, head, tail)
        return _AC_HEAD.build({"9F26": arqc, "9F27": bytes((CID_ARQC,)), "9F10": iad}) + tail

    def second_generate_ac(self, response_f55: bytes | None, arc: bytes) -> SecondAc:
        """Issuer authentication (tag 91), scripts 71/72, then TC or AAC."""
        pending = self._pending
        if pending is None:
            raise RuntimeError("second GENERATE AC without a first")
        self._pending = None
        response = _decoded(response_f55)
        arpc_ok = _arpc_ok(pending, response.get("91"))
        results = b"".join(
            self._run_script(pending, item) for item in response if item.tag in ("71", "72")
        )
        cid = CID_TC if arpc_ok and arc == _APPROVED_ARC else CID_AAC
        iad = _iad(_CVR_SECOND[cid], 0 if arpc_ok else _CVR_ISSUER_AUTH_FAILED)
        cryptogram = pending.keys.cryptogram(pending.ac_data_head + cvr_of_iad(iad))
        head = _AC_HEAD.build({"9F26": cryptogram, "9F27": bytes((cid,)), "9F10": iad})
        return SecondAc(cid, cryptogram, arpc_ok, results, head + pending.f55_tail)

    def _run_script(self, pending: _Pending, script: Tlv) -> bytes:
        """One 71/72 template: 9F18 id + 86 commands; DF31 entry (result byte + id)."""
        children = script.children or ()
        script_id = next((c.value for c in children if c.tag == "9F18"), bytes(4))[:4]
        sk = script_session_key(self._udk_smi, pending.arqc)
        atc = pending.atc
        commands = [c.value for c in children if c.tag == "86"]
        for n, command in enumerate(commands, 1):
            if not _command_mac_ok(sk, atc, pending.arqc, command):
                return bytes((0x10 | min(n, 0x0F),)) + script_id
        return b"\x20" + script_id


def _iad(cvr_byte2: int, cvr_byte3: int) -> bytes:
    """CUP issuer application data: 07, DKI 00, CVN 01, CVR (03, byte 2, byte 3, 00)."""
    return bytes((0x07, 0x00, 0x01, 0x03, cvr_byte2, cvr_byte3, 0x00))


def _decoded(response_f55: bytes | None) -> F55:
    if not response_f55:
        return F55()
    try:
        return decode_f55(response_f55)
    except DecodeError:
        return F55()


def _arpc_ok(pending: _Pending, tag91: bytes | None) -> bool:
    if tag91 is None or len(tag91) != 10:
        return False
    return pending.keys.arpc(pending.arqc, tag91[8:]) == tag91[:8]


def _command_mac_ok(sk: bytes, atc: bytes, arqc: bytes, command: bytes) -> bool:
    """CLA INS P1 P2 Lc data MAC: Lc counts data + MAC, the MAC covers the header,
    the ATC, the ARQC and the data."""
    if len(command) < 5 + SCRIPT_MAC_BYTES or command[4] != len(command) - 5:
        return False
    data, mac = command[5:-SCRIPT_MAC_BYTES], command[-SCRIPT_MAC_BYTES:]
    return script_mac(sk, command[:5], atc, arqc, data) == mac
