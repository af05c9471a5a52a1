"""Software rollouts driven by a fleet (``posp-fleet --tms-url``).

Every simulated terminal of the run gets its own TUF updater (``terminals.updater``)
with the trusted root built into it and its own work directory, and looks up its
offer at the TMS endpoint.  When an answer's header digit 6 says a software update
waits (terminal-link §10), the terminal's session fetches, verifies and "installs"
it before its next transaction and reports through 0820 ``362`` and F59 A2/05
(``terminals.management``).  The run then says which versions the fleet ended on
and why installs were refused: thousands of terminals drive a staged rollout.

Invariants: trust is decided by python-tuf alone (nothing here checks a package);
a terminal's updater is made once and kept for the run.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from terminals.management import SoftwareLink, http_offers
from terminals.updater import TerminalSoftware, TerminalUpdater


class FleetSoftwareError(ValueError):
    """A --tms-root that cannot be used (the message names the option and path)."""


def read_trusted_root(path: Path) -> bytes:
    """The root metadata the terminals trust, checked to be TUF root JSON."""
    try:
        data = path.read_bytes()
        signed = json.loads(data)["signed"]
    except OSError as exc:
        raise FleetSoftwareError(f"--tms-root {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise FleetSoftwareError(f"--tms-root {path}: not TUF root metadata (JSON)") from None
    if not isinstance(signed, dict) or signed.get("_type") != "root":
        raise FleetSoftwareError(f"--tms-root {path}: not TUF root metadata (_type root)")
    return data


class FleetSoftware:
    """The updaters of one run's terminals (see the module docstring)."""

    def __init__(
        self,
        tms_url: str,
        trusted_root: bytes,
        work_dir: Path,
        *,
        model: str,
        acquirer_id: str = "",
        app_version: str = "V1.0",
    ) -> None:
        self.tms_url = tms_url.rstrip("/")
        self.trusted_root = trusted_root
        self.work_dir = work_dir
        self.model = model
        self.acquirer_id = acquirer_id
        self.app_version = app_version
        self._offers = http_offers(self.tms_url)
        self._updaters: dict[str, TerminalUpdater] = {}

    def link(self, terminal_id: str) -> SoftwareLink:
        """The terminal's updater and offer lookup (made on first use)."""
        updater = self._updaters.get(terminal_id)
        if updater is None:
            software = TerminalSoftware(self.model, self.acquirer_id, app_version=self.app_version)
            updater = TerminalUpdater(
                software, self.trusted_root, self.work_dir / terminal_id, self.tms_url
            )
            self._updaters[terminal_id] = updater
        return SoftwareLink(updater, self._offers)

    def versions(self) -> dict[str, int]:
        """Application version → how many of the run's terminals run it."""
        return dict(Counter(u.software.app_version for u in self._updaters.values()))

    def refusals(self) -> dict[str, int]:
        """Last install result of the terminals whose last install was refused."""
        results = (u.software.last_result for u in self._updaters.values())
        return dict(Counter(r for r in results if r and r != "OK"))
