"""Demo cards and terminal-side request builders for the network tests."""

from __future__ import annotations

from typing import Final

from posp.crypto.des import tdes_encrypt_ecb
from posp.crypto.pinblock import iso0_clear
from posp.iso8583 import Message
from posp.lab.zone_keys import TEST_ZPK_CLEAR
from posp.network.mapping import PIN_SECURITY_CONTROL

PAN: Final = "6225880000000000036"  # active, PIN 123456, 1,000,000.00 CNY
PAN2: Final = "6225880000000000044"
PIN: Final = "123456"
EXPIRY: Final = "3012"


def pin_block(pin: str, pan: str, zpk_clear: str = TEST_ZPK_CLEAR) -> bytes:
    """ISO format 0 PIN block under a ZPK known in clear (tests only)."""
    return tdes_encrypt_ecb(bytes.fromhex(zpk_clear), iso0_clear(pin, pan))


def financial(
    mti: str,
    f3: str,
    amount_minor: int | None,
    *,
    pan: str = PAN,
    pin: str | None = None,
    f25: str = "00",
    f90: str | None = None,
) -> Message:
    """A network request as the switch's mapping would build it (no 7/11/32/33)."""
    message = Message(mti, {2: pan, 3: f3, 14: EXPIRY, 22: "021", 25: f25, 41: "10000001"})
    message[42] = "898100000000001"
    message[49] = "156"
    message[18] = "5411"
    message[37] = "010000000001"
    if amount_minor is not None:
        message[4] = f"{amount_minor:012d}"
    if pin is not None:
        message[52] = pin_block(pin, pan)
        message[53] = PIN_SECURITY_CONTROL
        message[26] = "12"
    if f90 is not None:
        message[90] = f90
    return message


def purchase(amount_minor: int, **kw: object) -> Message:
    return financial("0200", "000000", amount_minor, **kw)  # type: ignore[arg-type]
