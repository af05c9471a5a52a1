"""The pure payShield-style command engine: ``HsmEngine.handle(request) -> response``.

Invariants:
* ``handle`` never raises.  Unknown commands answer error 68, malformed fields
  15, command-specific faults their code; an unexpected exception answers 41
  (15 for a stray ValueError/CryptoError from input that slipped validation)
  and logs one line with the command code and exception type only.
* The header is echoed unchanged; a 0x19 + trailer is echoed when present.
* A request shorter than header + 2 bytes gets ``b""`` (no response).
* No I/O: the TCP server (``hsm_sim.server``) and the in-process client wrap it.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from hsm_sim.commands import COMMANDS, response_code
from hsm_sim.context import HsmContext
from hsm_sim.fields import HsmFault, Reader
from hsm_sim.lmk import LmkSet
from posp.errors import CryptoError

_log = structlog.get_logger("hsm_sim.engine")


class HsmEngine:
    """Stateless apart from caches: one engine may serve any number of connections."""

    def __init__(
        self,
        lmk: LmkSet | None = None,
        *,
        header_length: int = 4,
        authorised: bool = True,
        key_source: Callable[[int], bytes] | None = None,
    ) -> None:
        if header_length < 0:
            raise ValueError("header_length must be >= 0")
        self.header_length = header_length
        self.lmk = lmk if lmk is not None else LmkSet.test_set()
        self._ctx = HsmContext(self.lmk, authorised=authorised, key_source=key_source)

    @property
    def authorised(self) -> bool:
        return self._ctx.authorised

    @authorised.setter
    def authorised(self, value: bool) -> None:
        self._ctx.authorised = value

    def handle(self, request: bytes) -> bytes:
        """One request (header + command + fields [+ 0x19 + trailer]) → one response."""
        hl = self.header_length
        if len(request) < hl + 2:
            return b""
        header = request[:hl]
        command = request[hl : hl + 2]
        reader = Reader(request[hl + 2 :])
        entry = COMMANDS.get(command)
        if entry is None:
            return header + response_code(command) + b"68" + reader.trailer_after_fault()
        handler, reply_code, ascii_only = entry
        try:
            if ascii_only:
                reader.limit_to_trailer()
            body = handler(self._ctx, reader)
            reader.finish()
            return header + reply_code + body + reader.trailer()
        except HsmFault as fault:
            error = fault.code.encode()
        except (ValueError, CryptoError) as exc:
            error = b"15"
            _log.warning("hsm_unvalidated_input", command=_printable(command), error=_name(exc))
        except Exception as exc:
            error = b"41"
            _log.error("hsm_internal_error", command=_printable(command), error=_name(exc))
        return header + reply_code + error + reader.trailer_after_fault()


def _printable(command: bytes) -> str:
    return command.decode("ascii", "replace")


def _name(exc: BaseException) -> str:
    """Exception type and where it was raised; never its message (it may hold data)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else "?"
    return f"{type(exc).__name__} at {where}"
