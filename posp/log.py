"""Structured logging for the switch (structlog), with secrets masked last.

Every log line passes through :func:`mask_secrets` just before rendering, as
defence in depth behind the codec's own masking:

* track-like data (12-19 digits, ``D`` or ``=``, digits) is replaced by its length;
* any run of 13-19 digits (a PAN, wherever it hides: inside track data, an
  error message, a repr) becomes first 6 + ``*`` + last 4; a longer digit run
  is replaced by its length;
* a run of 16+ upper-case hex characters holding letters and digits (keys
  under any key, MACs, PIN blocks rendered as hex) is replaced by its length;
* values of keys named like secrets (pan, track, pin_block, tmk, tpk, key,
  ...) are replaced by ``***`` unless the key says it is already safe
  (``…_masked``, ``…_hash``, ``…_kcv``, ``…_type``);
* ``bytes`` values are shown as their length only.

Context: :func:`bind_connection` and :func:`bind_transaction` bind the peer,
terminal id, trace, MTI and RRN into contextvars, so every line of a request's
task carries them (each asyncio task runs in a copy of the context).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_TRACK_RUN: Final = re.compile(r"\d{12,19}[D=]\d*")
_PAN_RUN: Final = re.compile(r"\d{13,}")
_HEX_RUN: Final = re.compile(r"(?<![0-9A-Za-z])[UXYZ]?[0-9A-F]{16,}(?![0-9A-Za-z])")
_SECRET_KEY: Final = re.compile(
    r"(^|_)(pan|track\d?|pin|pin_?block|cvv\d?|cvn|key|keys|tmk|tpk|tak|tdk|zpk|zak|zmk"
    r"|pik|mak|lmk|kek|secret|password|f2|f35|f36|f52|f55|f62)($|_)",
    re.IGNORECASE,
)
_SAFE_SUFFIX: Final = ("_masked", "_hash", "_kcv", "_type", "_count", "_generated_at", "_s")

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _mask_digits(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) <= 19:
        return run[:6] + "*" * (len(run) - 10) + run[-4:]
    return f"<{len(run)} digits>"


def _mask_hex(match: re.Match[str]) -> str:
    run = match.group(0)
    if run.isdigit() or not any(c.isdigit() for c in run):
        return run  # digit runs are the PAN rule's business; all-letter words are no key
    return f"<{len(run)} hex>"


def mask_text(text: str) -> str:
    """``text`` with PAN-like digit runs and key-like hex runs masked."""
    text = _TRACK_RUN.sub(lambda m: f"<track {len(m.group(0))} chars>", text)
    return _HEX_RUN.sub(_mask_hex, _PAN_RUN.sub(_mask_digits, text))


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    if lowered.endswith(_SAFE_SUFFIX):
        return False
    return _SECRET_KEY.search(lowered) is not None


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {
            k: ("***" if isinstance(k, str) and _is_secret_key(k) else _mask_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return mask_text(str(value))


def mask_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last line of defence against leaked secrets."""
    masked: MutableMapping[str, Any] = event_dict
    for key in list(masked):
        masked[key] = "***" if _is_secret_key(key) else _mask_value(masked[key])
    return event_dict


def processors(json_format: bool) -> list[Processor]:
    """The processor chain; ``mask_secrets`` runs after exception formatting so
    that tracebacks are masked too."""
    chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        mask_secrets,
    ]
    if json_format:
        chain.append(structlog.processors.JSONRenderer())
    else:
        chain.append(structlog.dev.ConsoleRenderer(colors=False))
    return chain


def configure_logging(
    fmt: str = "console", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog process-wide: ``fmt`` console|json, ``level`` by name."""
    structlog.configure(
        processors=processors(fmt == "json"),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(stream if stream is not None else sys.stderr),
        cache_logger_on_first_use=False,
    )


def _config_key() -> tuple[object, ...]:
    """What a bound logger captured from structlog's configuration when it was made
    (the processor list is kept by identity: ``capture_logs`` edits it in place)."""
    config = structlog._config._CONFIG  # read per call: a public get_config() copies
    return (
        config.default_wrapper_class,
        config.logger_factory,
        id(config.default_processors),
        config.default_context_class,
    )


class CachedLogger:
    """A logger carrying ``logger_name=name`` that binds once per configuration.

    structlog's lazy proxy binds on EVERY call (~7 us, even for a filtered-out
    level); this binds again only when the configuration changed, so module-level
    loggers still obey ``configure_logging`` (and tests' ``capture_logs``)."""

    __slots__ = ("_bound", "_key", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._key: tuple[object, ...] = ()
        self._bound: Any = None

    def _logger(self) -> Any:
        key = _config_key()
        if key != self._key:
            self._bound = structlog.get_logger(logger_name=self._name).bind()
            self._key = key
        return self._bound

    # The usual methods as properties: a failed attribute lookup before
    # __getattr__ would cost more than the cache saves.
    @property
    def debug(self) -> Any:
        return self._logger().debug

    @property
    def info(self) -> Any:
        return self._logger().info

    @property
    def warning(self) -> Any:
        return self._logger().warning

    @property
    def error(self) -> Any:
        return self._logger().error

    @property
    def exception(self) -> Any:
        return self._logger().exception

    def __getattr__(self, method: str) -> Any:
        return getattr(self._logger(), method)


def get_logger(name: str) -> Any:
    """A logger carrying ``logger_name=name`` (see :class:`CachedLogger`): it picks
    up the configuration in force when it logs, so module-level loggers obey
    ``configure_logging``."""
    return CachedLogger(name)


def bind_connection(peer: str) -> None:
    """Bind the connection's peer address for the lines of this task's context."""
    structlog.contextvars.bind_contextvars(peer=peer)


def bind_transaction(
    *,
    terminal_id: str | None = None,
    trace: str | None = None,
    mti: str | None = None,
    rrn: str | None = None,
    txn_type: str | None = None,
) -> None:
    """Bind the request's identifiers (never a PAN) for this task's lines."""
    values = {
        "terminal_id": terminal_id,
        "trace": trace,
        "mti": mti,
        "rrn": rrn,
        "txn_type": txn_type,
    }
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


if not structlog.is_configured():
    # Until a program configures logging, still mask: a library import must
    # never leave structlog's unmasked defaults in force.
    configure_logging()
