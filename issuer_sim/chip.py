"""The issuer's side of a chip transaction (terminal-link.md §8), pure: the KQ call
for a request's F55, the response F55 (tag 91 = ARPC ‖ ARC) and issuer scripts.

Flow the authoriser follows (one HSM call per chip request): decide the
answer code first without committing it, send :func:`kq_request` (mode 1,
ARC = that code) through the HSM client, then :func:`response_f55`: a KQ
that did not verify means the answer becomes 05 and no tag 91 is sent.

Invariants:
* Nothing here holds an issuer key except :func:`lab_script_mac`, the lab's
  stand-in for an HSM script-MAC command (documented as such).
* A request F55 that does not decode, lacks one of §8's mandatory tags or
  carries a cryptogram version other than 01 raises :class:`ChipDataError`
  naming the tag (the issuer answers 30), never showing a value.
* Script commands carry Lc = data + MAC length, and the MAC covers
  CLA INS P1 P2 Lc ‖ ATC ‖ ARQC ‖ data (``posp.crypto.emv.script_mac``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from posp.crypto.emv import (
    AC_DATA_TAGS,
    SCRIPT_MAC_BYTES,
    Scheme,
    ac_data,
    cryptogram_version,
    derive_udk,
    pan_psn_block,
    script_mac,
    script_session_key,
)
from posp.errors import CryptoError, DecodeError
from posp.hsm.kq import KqMode, KqRequest, KqResult, pan_psn
from posp.iso8583.tlv import (
    F55,
    F55Use,
    Tlv,
    constructed,
    decode_f55,
    encode_tlvs,
    first_missing_tag,
    primitive,
)

#: The tags a KQ call takes from F55, in the order a missing one is named.
_KQ_TAG_ORDER = (*AC_DATA_TAGS, "9F10", "9F26")
_KQ_TAGS = frozenset(_KQ_TAG_ORDER)
_KQ_SIZES = (("9F36", 2), ("9F37", 4), ("9F26", 8))
#: Cryptogram version (9F10 byte 3) -> KQ scheme.
SCHEME_OF_VERSION = {0x01: Scheme.PBOC_V01}
#: Script commands: CLA INS P1 P2 (the MAC is appended, Lc computed).
PIN_UNBLOCK = bytes.fromhex("84240000")
PUT_DATA = bytes.fromhex("04DA")  # + the tag as P1 P2, e.g. 9F79 the EC balance limit

#: (command header CLA INS P1 P2 Lc, command data) -> the 4-byte MAC.
ScriptMac = Callable[[bytes, bytes], bytes]


class ChipDataError(ValueError):
    """A request's F55 the issuer cannot use; ``tag`` names the culprit (or None)."""

    def __init__(self, reason: str, tag: str | None = None) -> None:
        super().__init__(reason)
        self.tag = tag


def request_tags(f55: bytes, use: F55Use = F55Use.PURCHASE) -> F55:
    """Decode a request F55 and check §8's mandatory tags for ``use``."""
    try:
        decoded = decode_f55(f55)
    except DecodeError as exc:
        raise ChipDataError(f"F55 does not decode at offset {exc.offset}") from None
    missing = first_missing_tag(decoded, use)
    if missing is not None:
        raise ChipDataError(f"F55 lacks mandatory tag {missing}", missing)
    return decoded


def kq_request(
    f55: F55, *, pan: str, psn: str, mk_ac: str, arc: bytes, mode: KqMode = KqMode.VERIFY_AND_ARPC
) -> KqRequest:
    """The KQ call verifying the F55's ARQC for the card (PAN, PSN from F23's last two
    digits) under the issuer's IMK-AC (``mk_ac``, key type 109 under the LMK)."""
    tags = f55.values()
    if not tags.keys() >= _KQ_TAGS:
        missing = next(tag for tag in _KQ_TAG_ORDER if tag not in tags)
        raise ChipDataError(f"F55 lacks tag {missing}", missing)
    try:
        block = pan_psn(pan, psn)
    except ValueError:
        raise ChipDataError("PAN or card sequence number unusable") from None
    try:
        version = cryptogram_version(tags["9F10"])
        data = ac_data(tags)
    except CryptoError:
        raise ChipDataError("issuer application data too short", "9F10") from None
    scheme = SCHEME_OF_VERSION.get(version)
    if scheme is None:
        raise ChipDataError(f"cryptogram version {version:02X} not supported", "9F10")
    for tag, size in _KQ_SIZES:
        if len(tags[tag]) != size:
            raise ChipDataError(f"tag {tag} must be {size} bytes", tag)
    return KqRequest(
        mode, scheme, mk_ac, block, tags["9F36"], tags["9F37"], data, tags["9F26"], arc
    )


def atc_is_fresh(last_atc: int | None, f55: F55) -> bool:
    """Whether the request's ATC (9F36) is above the last one the issuer accepted for the
    card (a replayed or lower ATC is declined); any ATC is fresh for a first use."""
    atc = f55.get("9F36")
    if atc is None or len(atc) != 2:
        return False
    return last_atc is None or int.from_bytes(atc, "big") > last_atc


def response_f55(result: KqResult, arc: bytes, scripts: Sequence[Tlv] = ()) -> bytes | None:
    """Tag 91 (ARPC ‖ ARC) then the scripts; None when the ARQC did not verify (answer 05)."""
    if not result.verified or result.arpc is None:
        return None
    return encode_tlvs([primitive("91", result.arpc + arc), *scripts])


def issuer_script(
    template: str, script_id: bytes, commands: Iterable[tuple[bytes, bytes]], mac: ScriptMac
) -> Tlv:
    """A 71 (before the second GENERATE AC) or 72 (after) template: 9F18 id, then one 86
    per (CLA INS P1 P2, data) command with Lc and the MAC appended."""
    if template not in ("71", "72"):
        raise ValueError("template must be 71 or 72")
    if len(script_id) != 4:
        raise ValueError("script_id must be 4 bytes")
    items = [primitive("9F18", script_id)]
    for head, data in commands:
        if len(head) != 4:
            raise ValueError("a script command head must be 4 bytes (CLA INS P1 P2)")
        header = head + bytes((len(data) + SCRIPT_MAC_BYTES,))
        items.append(primitive("86", header + data + mac(header, data)))
    return constructed(template, items)


def lab_script_mac(imk_smi: bytes, pan: str, psn: str, atc: bytes, arqc: bytes) -> ScriptMac:
    """The lab's script MAC from a clear IMK-SMI: a stand-in until an HSM command makes
    script MACs (payShield's KU); never for production keys."""
    sk = script_session_key(derive_udk(imk_smi, pan_psn_block(pan, psn)), arqc)
    return lambda header, data: script_mac(sk, header, atc, arqc, data)
