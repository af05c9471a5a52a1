"""Clear PIN blocks: ISO 9564 format 0 (HSM format code 01) and format 03.

Invariants:
* Builders take a PIN of 4-12 decimal digits and return the 8-byte clear block;
  parsers return the PIN or raise ``PinBlockError`` (never with the PIN or the
  block in the message).
* Format 0 with ``pan=None`` is the "PIN field alone" variant the terminal link
  signals with F53 digit 1 = ``1`` (terminal-link.md §6): the PAN field is
  taken as all zeros.
"""

from __future__ import annotations

from posp.errors import PinBlockError, PinLengthError

MIN_PIN_DIGITS = 4
MAX_PIN_DIGITS = 12
_DIGITS = frozenset("0123456789")


def account12(pan: str) -> str:
    """The 12 rightmost PAN digits excluding the check digit (left zero-filled)."""
    if not pan or not set(pan) <= _DIGITS:
        raise PinBlockError("account number must be decimal digits")
    return pan[:-1][-12:].rjust(12, "0")


def _check_pin(pin: str) -> None:
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS or not set(pin) <= _DIGITS:
        raise PinBlockError("PIN must be 4 to 12 decimal digits")


def _account_field(account: str) -> int:
    if len(account) != 12 or not set(account) <= _DIGITS:
        raise PinBlockError("account number must be 12 decimal digits")
    return int(account, 16)


def _pan_field(pan: str | None) -> int:
    return 0 if pan is None else _account_field(account12(pan))


def iso0_clear(pin: str, pan: str | None) -> bytes:
    """Clear ISO 9564 format 0 block; ``pan=None`` gives the PIN field alone."""
    return _iso0_clear(pin, _pan_field(pan))


def iso0_pin(clear: bytes, pan: str | None) -> str:
    """PIN from a clear format 0 block; PinBlockError when it holds no valid PIN."""
    return _iso0_pin(clear, _pan_field(pan))


def iso0_clear_account(pin: str, account: str) -> bytes:
    """Format 0 block from the 12-digit account field itself (HSM commands carry it)."""
    return _iso0_clear(pin, _account_field(account))


def iso0_pin_account(clear: bytes, account: str) -> str:
    """PIN from a format 0 block given the 12-digit account field."""
    return _iso0_pin(clear, _account_field(account))


def _iso0_clear(pin: str, pan_field: int) -> bytes:
    _check_pin(pin)
    pin_field = int(f"0{len(pin):X}{pin}".ljust(16, "F"), 16)
    return (pin_field ^ pan_field).to_bytes(8, "big")


def _iso0_pin(clear: bytes, pan_field: int) -> str:
    if len(clear) != 8:
        raise PinBlockError("PIN block must be 8 bytes")
    field = f"{int.from_bytes(clear, 'big') ^ pan_field:016X}"
    if field[0] != "0":
        raise PinBlockError("PIN block control nibble is not 0")
    length = int(field[1], 16)
    if not MIN_PIN_DIGITS <= length <= MAX_PIN_DIGITS:
        raise PinLengthError("PIN length nibble out of range")
    pin = field[2 : 2 + length]
    if not set(pin) <= _DIGITS or field[2 + length :] != "F" * (14 - length):
        raise PinBlockError("PIN block holds non-decimal PIN digits or bad fill")
    return pin


def format03_clear(pin: str) -> bytes:
    """Clear format 03 (Diebold/IBM) block: the PIN then F fill, no PAN."""
    _check_pin(pin)
    return bytes.fromhex(pin.ljust(16, "F"))


def format03_pin(clear: bytes) -> str:
    """PIN from a clear format 03 block; PinBlockError when it holds no valid PIN."""
    if len(clear) != 8:
        raise PinBlockError("PIN block must be 8 bytes")
    field = clear.hex().upper()
    pin = field.rstrip("F")
    if not set(pin) <= _DIGITS or not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        raise PinBlockError("PIN block holds non-decimal PIN digits or bad length")
    return pin
