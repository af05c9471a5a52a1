"""issuer_sim: the simulated card network and the issuers behind it (network-link.md).

``start_issuer(settings, hsm=None)`` runs it in-process; ``issuer-sim`` is the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from issuer_sim.app import start_issuer
    from issuer_sim.server import IssuerServer
    from issuer_sim.settings import IssuerSettings

__all__ = ["IssuerServer", "IssuerSettings", "start_issuer"]


def __getattr__(name: str) -> Any:  # lazy, so ``issuer_sim.rules`` imports stay light
    if name == "start_issuer":
        from issuer_sim.app import start_issuer

        return start_issuer
    if name == "IssuerServer":
        from issuer_sim.server import IssuerServer

        return IssuerServer
    if name == "IssuerSettings":
        from issuer_sim.settings import IssuerSettings

        return IssuerSettings
    raise AttributeError(name)
