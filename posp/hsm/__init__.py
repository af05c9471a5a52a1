"""The switch's HSM clients: one interface (:class:`HsmClient`), two transports.

``open_hsm_client(url)`` picks one from a URL:

* ``inprocess://`` — the hsm_sim engine in this process (test LMK set);
* ``tcp://host:port?connections=4&timeout_s=2.0&header_length=4&max_in_flight=256``
  — a pool of pipelined connections to a payShield-style HSM or ``hsm-sim``.

The TCP client connects on ``await client.start()`` or on its first call.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from posp.errors import ConfigError
from posp.hsm.api import HsmClient
from posp.hsm.inprocess import InProcessHsmClient
from posp.hsm.tcp import HsmClientStats, TcpHsmClient

__all__ = [
    "HsmClient",
    "HsmClientStats",
    "InProcessHsmClient",
    "TcpHsmClient",
    "open_hsm_client",
]

_TCP_OPTIONS = {
    "connections": int,
    "timeout_s": float,
    "header_length": int,
    "max_in_flight": int,
}


def open_hsm_client(url: str) -> InProcessHsmClient | TcpHsmClient:
    """Build the HSM client named by ``url`` (ConfigError when it does not parse)."""
    parts = urlsplit(url)
    if parts.scheme == "inprocess":
        return InProcessHsmClient()
    if parts.scheme != "tcp":
        raise ConfigError(f"HSM URL scheme must be inprocess:// or tcp://, not {parts.scheme!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"HSM URL has a bad port: {exc}") from None
    if not host or port is None:
        raise ConfigError("HSM URL must be tcp://host:port")
    options: dict[str, float | int] = {}
    for name, values in parse_qs(parts.query).items():
        convert = _TCP_OPTIONS.get(name)
        if convert is None:
            raise ConfigError(f"unknown HSM URL option {name!r}; known: {sorted(_TCP_OPTIONS)}")
        try:
            options[name] = convert(values[-1])
        except ValueError:
            raise ConfigError(f"HSM URL option {name} is not a number") from None
    return TcpHsmClient(
        host,
        port,
        connections=int(options.get("connections", 4)),
        timeout_s=float(options.get("timeout_s", 2.0)),
        header_length=int(options.get("header_length", 4)),
        max_in_flight_per_connection=int(options.get("max_in_flight", 256)),
    )
