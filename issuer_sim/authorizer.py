"""Financial requests from the network → ledger decisions → network responses.

Invariants:
* The transaction kind comes from the MTI, F3 digits 1-2 and F25 (network-link.md §3;
  F25 ``66`` marks the transfer family, §8): a request no row matches answers 12.
* A transfer's receiving card is F103; a beneficiary check's card is the receiving one
  (F2, also in F103).  Its answer's F63 is the card organisation + the masked holder
  name, and F44 names the receiving card's issuer.
* A PIN (F52) is verified through the HSM (EC, ZPK → PVV) only for an active card, with
  each acceptable ZPK in turn (current, pending, previous) so PINs translated just
  before or after a key exchange still verify; a pending ZPK that verifies is promoted.
* Every response echoes 7, 11 and 32 (the switch matches on them) and 33.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Final

from issuer_sim.chipissuer import ChipIssuer
from issuer_sim.ledger import Ledger, Outcome, Request
from issuer_sim.provisioning import PVKI
from issuer_sim.rules import DROP, Rules
from posp.crypto.pinblock import account12
from posp.errors import HsmCommandError
from posp.hsm.api import HsmClient
from posp.iso8583 import Message
from posp.iso8583.fields import Balance, render_f44
from posp.network import zone
from posp.network.keyring import ZoneKey

#: (MTI, F3 digits 1-2, pre-auth family per F25 == "06") → kind
KINDS: Final[dict[tuple[str, str, bool], str]] = {
    ("0200", "31", False): "balance",
    ("0200", "00", False): "purchase",
    ("0200", "20", False): "purchase_void",
    ("0220", "20", False): "refund",
    ("0100", "03", True): "preauth",
    ("0100", "20", True): "preauth_void",
    ("0200", "00", True): "completion",
    ("0200", "20", True): "completion_void",
    ("0100", "33", False): "beneficiary_check",
}
#: (MTI, F3 digits 1-2) → kind for the transfer family (F25 = 66).
TRANSFER_KINDS: Final[dict[tuple[str, str], str]] = {
    ("0200", "40"): "transfer",
    ("0200", "20"): "transfer_void",
}
TRANSFER_CONDITION: Final = "66"
_ECHOED: Final = (2, 3, 4, 7, 11, 25, 32, 33, 37, 41, 42, 49, 60, 90)


def request_kind(message: Message) -> str | None:
    f3 = str(message.get(3) or "")
    if message.get(25) == TRANSFER_CONDITION:
        return TRANSFER_KINDS.get((message.mti, f3[:2]))
    preauth_family = message.get(25) == "06"
    kind = KINDS.get((message.mti, f3[:2], preauth_family))
    if kind is None and message.mti == "0100":  # F25 missing on a pre-auth: still a pre-auth
        kind = KINDS.get((message.mti, f3[:2], True))
    return kind


def original_key(message: Message) -> str:
    """This request's 42-digit original-data key (what a later F90 will carry)."""
    return (
        message.mti
        + str(message.get(11) or "").zfill(6)
        + str(message.get(7) or "").zfill(10)
        + str(message.get(32) or "").zfill(11)
        + str(message.get(33) or "").zfill(11)
    )


def echo_response(message: Message, mti: str | None = None) -> Message:
    """A response (``mti``, by default the request's response MTI) carrying the
    request's fields that every answer echoes (the very same value objects)."""
    return zone.echoed_response(message, _ECHOED, mti)


def card_pan(message: Message) -> str | None:
    pan = message.get(2)
    if isinstance(pan, str) and pan:
        return pan
    track2 = message.get(35)
    if isinstance(track2, str):
        for separator in ("D", "="):
            if separator in track2:
                return track2.split(separator, 1)[0]
    return None


def card_expiry(message: Message) -> str | None:
    expiry = message.get(14)
    if isinstance(expiry, str) and len(expiry) == 4:
        return expiry
    track2 = message.get(35)
    if isinstance(track2, str):
        for separator in ("D", "="):
            if separator in track2:
                rest = track2.split(separator, 1)[1]
                return rest[:4] if len(rest) >= 4 else None
    return None


#: (epoch second, offset hours, YYYYMMDD, MMDD) of the last local clock reading.
_last_dates: tuple[int, float, str, str] = (-1, 0.0, "", "")


@dataclass(slots=True)
class Authorizer:
    ledger: Ledger
    hsm: HsmClient
    zpk: ZoneKey
    pvk_lmk: str
    rules: Rules
    issuer_id: str
    tz_offset_hours: float
    #: Chip cards (issuer_sim.chipissuer): a precheck before the ledger, KQ after it.
    chip: ChipIssuer | None = None

    def _local_dates(self) -> tuple[str, str]:
        """(YYYYMMDD, MMDD) of the local clock; formatted once per second, as every
        request asks for both (strftime is several microseconds each)."""
        global _last_dates
        second = int(time.time())
        cached = _last_dates
        if cached[0] == second and cached[1] == self.tz_offset_hours:
            return cached[2], cached[3]
        local = dt.datetime.fromtimestamp(second, dt.UTC) + dt.timedelta(hours=self.tz_offset_hours)
        today, mmdd = local.strftime("%Y%m%d"), local.strftime("%m%d")
        _last_dates = (second, self.tz_offset_hours, today, mmdd)
        return today, mmdd

    async def pin_matches(self, pan: str, pvv: str, pin_block: bytes) -> bool:
        """True when the PIN block under any acceptable ZPK matches the PVV."""
        acct12 = account12(pan)
        block = pin_block.hex().upper()
        for zpk in self.zpk.candidates():
            try:
                ok = await self.hsm.verify_pin_zpk_pvv(
                    zpk, self.pvk_lmk, block, "01", acct12, PVKI, pvv
                )
            except HsmCommandError:  # undecipherable under this key: try the next
                ok = False
            if ok:
                if zpk == self.zpk.pending:
                    self.zpk.promote()
                return True
        return False

    async def authorize(self, message: Message) -> Message | None:
        """The response to a financial request, or None when the rules say drop it."""
        today, mmdd = self._local_dates()
        kind = request_kind(message)
        pan = card_pan(message)
        amount_text = str(message.get(4) or "0")
        amount_minor = int(amount_text) if amount_text.isdigit() else -1
        verdict = self.rules.verdict(pan, amount_minor if 4 in message else None)
        chip_code, chip_tags = (
            self.chip.precheck(message, kind, pan) if self.chip is not None else (None, None)
        )
        if kind is None or pan is None or amount_minor < 0:
            outcome = Outcome("12" if kind is None else "30")
        elif chip_code is not None:
            outcome = Outcome(chip_code)
        else:
            pin_ok: bool | None = None
            account = self.ledger.accounts.get(pan)
            pin_block = message.get(52)
            if isinstance(pin_block, bytes) and account is not None and account.status == "active":
                pin_ok = await self.pin_matches(pan, account.pvv, pin_block)
            f90 = message.get(90)
            f103 = message.get(103)
            request = Request(
                kind=kind,
                key=original_key(message),
                pan=pan,
                amount_minor=amount_minor,
                today=today,
                expiry=card_expiry(message),
                original_key=f90 if isinstance(f90, str) else None,
                pin_ok=pin_ok,
                receiving_pan=f103 if isinstance(f103, str) else None,
                currency=str(message.get(49) or "156"),
            )
            forced = verdict if verdict != DROP else ""
            outcome = self.ledger.authorize(request, forced)
        if verdict == DROP:
            return None
        response = self.response(message, outcome, mmdd, pan)
        if self.chip is not None and chip_code is None and chip_tags is not None and pan:
            # The chip hook: KQ for the decided answer; a bad ARQC undoes an approval.
            verified = await self.chip.complete(message, pan, chip_tags, response)
            if not verified and outcome.code == "00" and kind != "balance":
                self.ledger.reverse(original_key(message))
        return response

    def response(self, message: Message, outcome: Outcome, mmdd: str, pan: str | None) -> Message:
        response = echo_response(message)
        response[39] = outcome.code
        response[15] = mmdd
        account = self.ledger.accounts.get(pan) if pan else None
        issuer_id = account.issuer_id if account is not None and account.issuer_id else None
        response[44] = render_f44(issuer_id or self.issuer_id, str(message.get(32) or ""))
        if account is not None:
            response[63] = account.card_org + (outcome.holder_name or "")
        if outcome.auth_code is not None and outcome.code == "00":
            response[38] = outcome.auth_code
            if request_kind(message) == "balance" and outcome.available_minor is not None:
                sign = "C" if outcome.available_minor >= 0 else "D"
                response[54] = Balance(
                    "00", "02", "156", sign, abs(outcome.available_minor)
                ).render()
        return response

    def advice_response(self, message: Message) -> Message:
        """0630 for a script result advice (0620): recorded by its echo, always 00."""
        response = echo_response(message, "0630")
        response[39] = "00"
        response[15] = self._local_dates()[1]
        return response

    def reversal_response(self, message: Message) -> Message:
        """0430 for a 0420: undo the referenced transaction once; always 00 unless F90 is
        missing (30)."""
        response = echo_response(message, "0430")
        f90 = message.get(90)
        if isinstance(f90, str) and len(f90) == 42 and f90.isdigit():
            self.ledger.reverse(f90)
            response[39] = "00"
        else:
            response[39] = "30"
        response[15] = self._local_dates()[1]
        return response
