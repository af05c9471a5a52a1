"""The one exception tree of posp.

::

    PospError
    ├── CodecError                    ISO 8583 / framing problems (pure layers)
    │   ├── DecodeError               bytes that do not parse; names field + offset, never the value
    │   ├── EncodeError               a value that does not fit its field spec; names the field
    │   └── FramingError              bad length prefix, bad TPDU, frame over the maximum
    ├── CryptoError                   pure crypto layer
    │   ├── KeyParityError
    │   ├── PinBlockError             a PIN block that does not decode to a valid PIN
    │   │   └── PinLengthError        … because its PIN length is outside 4-12
    │   └── CheckValueMismatch        a key whose check value is not the one announced
    ├── HsmError                      anything from the HSM client
    │   ├── HsmUnavailable            no connection / connection broke / deadline passed
    │   │   └── HsmTimeout
    │   └── HsmCommandError           the HSM answered with a non-zero error code
    │       ├── HsmVerificationFailed     error 01 on a verify command (PIN or MAC)
    │       ├── HsmParityError            errors 10 / 11
    │       └── HsmPinBlockError          error 20 / 23 / 24 (undecipherable PIN block)
    ├── StoreError                    journal / registry failures
    │   ├── StoreUnavailable
    │   └── DuplicateTransaction      unique (terminal, batch, trace) violated
    ├── NetworkError                  upstream card network link
    │   ├── NetworkUnavailable        link down / not signed on  → 91 at once
    │   └── NetworkTimeout            no answer in time          → 98 + store-and-forward 0420
    ├── ConfigError                   settings that do not validate
    └── AdminError (posp.admin)       a provisioning request that cannot be carried
                                      out; ``argument`` names the culprit (CLI exit 2)

A pipeline decline (e.g. 55 wrong PIN) is control flow, not an exception: steps
return a response code.  Lower-layer exceptions are translated at the
boundary with ``raise ... from exc``; ``posp.pipeline`` holds the single table
mapping exception types to response codes, and anything unmapped answers 96.

Invariant: no exception message in this tree ever contains a PAN, track data,
a PIN block or key material.  Messages name fields and offsets only.
"""

from __future__ import annotations


class PospError(Exception):
    """Base of every error raised on purpose by posp."""


# --- codec -----------------------------------------------------------------


class CodecError(PospError):
    """ISO 8583 or framing failure."""


class DecodeError(CodecError):
    """Bytes that do not decode.  Carries the field number (None for MTI/bitmap/
    header) and the byte offset, never the field's value, so it is safe to log
    and carries enough for the switch to answer response code 30."""

    def __init__(self, reason: str, *, field: int | None = None, offset: int = 0) -> None:
        self.reason = reason
        self.field = field
        self.offset = offset
        where = f"field {field}" if field is not None else "message"
        super().__init__(f"{where} at offset {offset}: {reason}")


class EncodeError(CodecError):
    """A value that does not fit its field specification."""

    def __init__(self, reason: str, *, field: int | None = None) -> None:
        self.reason = reason
        self.field = field
        where = f"field {field}" if field is not None else "message"
        super().__init__(f"{where}: {reason}")


class FramingError(CodecError):
    """A frame that cannot be delimited: bad length prefix, bad TPDU, too large."""


# --- crypto ----------------------------------------------------------------


class CryptoError(PospError):
    """Pure cryptographic layer failure."""


class KeyParityError(CryptoError):
    """A DES key without odd parity where parity is required."""


class PinBlockError(CryptoError):
    """A clear PIN block that does not hold a valid PIN."""


class PinLengthError(PinBlockError):
    """A clear PIN block whose PIN length is outside 4-12 (an HSM answers 24, not 20)."""


class CheckValueMismatch(CryptoError):
    """A key whose computed check value differs from the announced one."""


# --- HSM -------------------------------------------------------------------


class HsmError(PospError):
    """Any failure talking to the HSM."""


class HsmUnavailable(HsmError):
    """The HSM cannot be reached, the connection broke, or no connection is up."""


class HsmTimeout(HsmUnavailable):
    """The HSM did not answer before the call's deadline."""


class HsmCommandError(HsmError):
    """The HSM answered with an error code."""

    def __init__(self, command: str, error_code: str) -> None:
        self.command = command
        self.error_code = error_code
        super().__init__(f"HSM {command} answered error {error_code}")


class HsmVerificationFailed(HsmCommandError):
    """Error 01 on a verification command (PIN or MAC did not verify)."""


class HsmParityError(HsmCommandError):
    """Error 10 / 11: a key failed its parity check."""


class HsmPinBlockError(HsmCommandError):
    """Error 20 / 23 / 24: the PIN block could not be processed."""


# --- store -----------------------------------------------------------------


class StoreError(PospError):
    """Journal or registry failure."""


class StoreUnavailable(StoreError):
    """The database cannot be reached."""


class DuplicateTransaction(StoreError):
    """The (terminal, batch, trace) key was already journaled."""


# --- network ---------------------------------------------------------------


class NetworkError(PospError):
    """Upstream card network failure."""


class NetworkUnavailable(NetworkError):
    """Link down or not signed on: answer 91 without waiting."""


class NetworkTimeout(NetworkError):
    """No answer within the deadline: answer 98 and queue a reversal."""


# --- config ----------------------------------------------------------------


class ConfigError(PospError):
    """Settings that do not validate."""


def hsm_error_for(command: str, error_code: str) -> HsmCommandError:
    """Map an HSM (command, error code) to the typed exception."""
    if error_code == "01":
        return HsmVerificationFailed(command, error_code)
    if error_code in ("10", "11"):
        return HsmParityError(command, error_code)
    if error_code in ("20", "23", "24"):
        return HsmPinBlockError(command, error_code)
    return HsmCommandError(command, error_code)
