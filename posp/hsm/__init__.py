"""The switch's HSM client: one typed class (:class:`HsmClient`) over a transport.

``open_hsm_client(url)`` picks the transport from a URL:

* ``tcp://host:port?connections=4&timeout_s=2.0&header_length=4&max_in_flight=256``
  — a pool of pipelined connections to a payShield-style HSM or ``hsm-sim``
  (:class:`posp.hsm.tcp.TcpTransport`);
* ``inprocess://`` — LABS ONLY: the hsm_sim engine with the public test LMK in
  this process.  Its transport lives in the lab package (``posp.lab``), loaded
  by name only when this scheme is asked for, so the switch's own modules never
  import the simulator.

The TCP transport connects on ``await client.start()`` or on the first call.
"""

from __future__ import annotations

import importlib
import ssl
from typing import Final
from urllib.parse import parse_qs, urlsplit

from prometheus_client.registry import CollectorRegistry

from posp.errors import ConfigError
from posp.hsm.api import HsmClient, HsmTransport
from posp.hsm.stats import HsmClientStats
from posp.hsm.tcp import TcpTransport

__all__ = [
    "HsmClient",
    "HsmClientStats",
    "HsmTransport",
    "TcpTransport",
    "open_hsm_client",
]

_TCP_OPTIONS = {
    "connections": int,
    "timeout_s": float,
    "header_length": int,
    "max_in_flight": int,
}

#: The lab's in-process transport, named rather than imported: see the module docstring.
INPROCESS_TRANSPORT_MODULE: Final = "posp.lab.inprocess_hsm"


def open_hsm_client(
    url: str,
    *,
    registry: CollectorRegistry | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_name: str = "",
) -> HsmClient:
    """Build the HSM client named by ``url`` (ConfigError when it does not parse);
    the TCP transport exports its counters to ``registry`` when one is given."""
    parts = urlsplit(url)
    if parts.scheme == "inprocess":
        lab = importlib.import_module(INPROCESS_TRANSPORT_MODULE)
        transport: HsmTransport = lab.InProcessTransport()
        return HsmClient(transport)
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
    transport = TcpTransport(
        host,
        port,
        connections=int(options.get("connections", 4)),
        timeout_s=float(options.get("timeout_s", 2.0)),
        header_length=int(options.get("header_length", 4)),
        max_in_flight_per_connection=int(options.get("max_in_flight", 256)),
        registry=registry,
        ssl_context=ssl_context,
        server_name=server_name,
    )
    return HsmClient(transport)
