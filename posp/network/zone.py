"""Zone security on the network link, shared by the switch and the network simulator.

* MAC: F128 = ISO 9797-1 alg 3 (X9.19), padding 1, double-length ZAK, all 8 bytes,
  over ``network_mab`` (network-link.md §5), computed by the HSM (M6/M8 alg ``13``).
* Key exchange (§4): 0800/0810 with F70 ``101``, F53 digit 1 = ``1`` ZPK / ``2`` ZAK,
  F48 = 32 hex key under the ZMK (scheme X) + 6 hex check value.

Invariant: clear keys never appear here; F48 only ever holds a key under the ZMK.
Network management messages that are not key exchange (sign-on, sign-off, echo) are
not MAC'd, so a side whose ZAK is stale can still sign on and ask for new keys.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Final

from posp.errors import CheckValueMismatch, HsmError
from posp.hsm.api import KEY_ZAK, MAC_ALG_X919_FULL, HsmClient
from posp.iso8583 import EncodedNetworkMessage, Message, network_mab
from posp.network.keyring import ZoneKey

NMI_SIGN_ON: Final = "001"
NMI_SIGN_OFF: Final = "002"
NMI_KEY_EXCHANGE: Final = "101"
NMI_ECHO: Final = "301"
KEY_KIND_ZPK: Final = "1"
KEY_KIND_ZAK: Final = "2"
MAC_FIELD: Final = 128


def needs_mac(message: Message) -> bool:
    """Every message except non-key-exchange network management carries F128."""
    if message.mti in ("0800", "0810"):
        return message.get(70) == NMI_KEY_EXCHANGE
    return True


async def zone_mac(hsm: HsmClient, zak_lmk: str, mab: bytes) -> bytes:
    """F128 for a MAB: X9.19, padding 1, all 8 bytes, under the ZAK (HSM M6)."""
    return await hsm.generate_mac(KEY_ZAK, zak_lmk, mab, algorithm=MAC_ALG_X919_FULL, padding="1")


async def mac_message(hsm: HsmClient, zak_lmk: str, message: Message) -> None:
    """Compute and set F128 (the MAB does not depend on F128's presence)."""
    message[MAC_FIELD] = await zone_mac(hsm, zak_lmk, network_mab(message))


async def mac_encoded(hsm: HsmClient, zak_lmk: str, encoded: EncodedNetworkMessage) -> None:
    """:func:`mac_message` over fields already encoded for the frame (each field is
    encoded once for MAB and frame)."""
    encoded.set(MAC_FIELD, await zone_mac(hsm, zak_lmk, encoded.mab()))


async def verify_encoded(
    hsm: HsmClient, zak: ZoneKey, encoded: EncodedNetworkMessage
) -> str | None:
    """The ZAK (under LMK) whose MAC matches F128, or None (missing or wrong MAC);
    the MAB is built from texts already encoded, e.g.
    ``EncodedNetworkMessage.received(frame)``: the bytes as they arrived."""
    mac = encoded.message.get(MAC_FIELD)
    if not isinstance(mac, bytes) or len(mac) != 8:
        return None
    return await _verify_mab(hsm, zak, encoded.mab(), mac)


async def _verify_mab(hsm: HsmClient, zak: ZoneKey, mab: bytes, mac: bytes) -> str | None:
    for key in zak.candidates():
        if await hsm.verify_mac(KEY_ZAK, key, mab, mac, algorithm=MAC_ALG_X919_FULL):
            return key
    return None


#: (epoch second, offset, F7 text) of the last clock reading: F7 changes once a
#: second while every network request asks for it.
_last_f7: tuple[int, float, str] = (-1, 0.0, "")


def transmission_time(tz_offset_hours: float, now: dt.datetime | None = None) -> str:
    """F7 MMDDhhmmss on the node clock (UTC+8 by default)."""
    global _last_f7
    if now is not None:
        return _format_f7(now + dt.timedelta(hours=tz_offset_hours))
    second = int(time.time())
    cached = _last_f7
    if cached[0] == second and cached[1] == tz_offset_hours:
        return cached[2]
    utc = dt.datetime.fromtimestamp(second, dt.UTC)
    text = _format_f7(utc + dt.timedelta(hours=tz_offset_hours))
    _last_f7 = (second, tz_offset_hours, text)
    return text


def _format_f7(local: dt.datetime) -> str:
    # By hand: strftime costs several microseconds.
    return f"{local.month:02d}{local.day:02d}{local.hour:02d}{local.minute:02d}{local.second:02d}"


def management_request(code: str) -> Message:
    """A bare 0800 with F70; the link fills 7, 11, 32, 33."""
    return Message("0800", {70: code})


@dataclass(frozen=True, slots=True)
class KeyOffer:
    """F48 of a key exchange: the key under the ZMK (scheme X) and its check value."""

    kind: str  # KEY_KIND_ZPK | KEY_KIND_ZAK
    under_zmk: str  # "X" + 32 hex
    kcv: str  # 6 hex

    def f48(self) -> str:
        return self.under_zmk.removeprefix("X") + self.kcv

    def f53(self) -> str:
        return self.kind + "0" * 15


def key_kind(message: Message) -> str | None:
    """F53 digit 1 of a key exchange message when it names ZPK or ZAK."""
    f53 = message.get(53)
    if isinstance(f53, str) and f53[:1] in (KEY_KIND_ZPK, KEY_KIND_ZAK):
        return f53[:1]
    return None


def parse_offer(message: Message) -> KeyOffer | None:
    """The key offered in F48, or None when F53/F48 are missing or malformed."""
    kind = key_kind(message)
    f48 = message.get(48)
    if kind is None or not isinstance(f48, str) or len(f48) != 38:
        return None
    try:
        bytes.fromhex(f48)
    except ValueError:
        return None
    return KeyOffer(kind, "X" + f48[:32].upper(), f48[32:].upper())


async def import_offer(hsm: HsmClient, zmk_lmk: str, offer: KeyOffer) -> str:
    """Import an offered key through the HSM (FA / FK); returns it under the LMK.

    Raises CheckValueMismatch when the HSM's check value differs from the offer's,
    HsmError when the HSM refuses the key."""
    if offer.kind == KEY_KIND_ZPK:
        imported = await hsm.import_zpk(zmk_lmk, offer.under_zmk)
    else:
        imported = await hsm.import_zak(zmk_lmk, offer.under_zmk)
    if imported.kcv.upper() != offer.kcv:
        raise CheckValueMismatch("key exchange check value does not match")
    return imported.under_lmk


async def key_exchange_answer_code(
    hsm: HsmClient, zmk_lmk: str, request: Message
) -> tuple[str, KeyOffer | None, str | None]:
    """(response code, offer, imported key under LMK) for an incoming 0800/101 with F48."""
    offer = parse_offer(request)
    if offer is None:
        return "30", None, None
    try:
        return "00", offer, await import_offer(hsm, zmk_lmk, offer)
    except (CheckValueMismatch, HsmError):
        return "96", offer, None


def response_code_ok(message: Message) -> bool:
    return message.get(39) == "00"


#: What an answer to network management (and a bare refusal) echoes of its request.
MANAGEMENT_ECHOED: Final = (7, 11, 32, 33, 53, 70, 100)


def echoed_response(request: Message, echoed: tuple[int, ...], mti: str | None = None) -> Message:
    """A response (``mti``, by default the request's response MTI) carrying those of
    the request's ``echoed`` fields it has (the very same value objects)."""
    fields = request.fields
    return Message(
        response_mti(request.mti) if mti is None else mti,
        {n: fields[n] for n in echoed if n in fields},
    )


def response_mti(request_mti: str) -> str:
    """0200 → 0210, 0220 → 0230, 0420 → 0430, 0800 → 0810."""
    return request_mti[:2] + str(int(request_mti[2]) + 1) + request_mti[3:]
