"""The switch's terminal management: what each terminal holds against what it
should hold, read once and cached per terminal beside the registry cache, and
the writes the TMS dialogues make.

Invariants:
* ``view(terminal_id, max_age_s)`` answers from a per-terminal cache read at
  most ``max_age_s`` ago (``posp.store.registry_cache``); a miss costs one
  query (the terminal's row, parameter sets and rollout offer) and, at most
  once per ``max_age_s`` for all terminals, one for the IC set versions.  Every write
  made through this object forgets what it changed, so the switch that made
  a change sees it at once; changes made elsewhere (the CLI) within ``max_age_s``.
* ``TerminalView.digit`` is ``params.processing_digit`` over the view's
  stored versions: pure, computed once per read.
* ``terminal_caps`` is the one place the pipeline (and risk, transfer and
  chip steps) read a terminal's caps and no-PIN limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

from posp.iso8583.tms_identity import TerminalIdentity
from posp.store.ic import IcStore
from posp.store.registry_cache import RegistryCache
from posp.store.tms import TerminalTms, TmsStore
from posp.tms.ic import AID_KIND, CAPK_KIND
from posp.tms.params import EffectiveParams, ParamValues, effective, processing_digit
from posp.tms.rollout import RolloutService

DEFAULT_VIEW_MAX_AGE_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class TerminalCaps:
    """A terminal's single-transaction caps and contactless no-PIN limit, minor
    units; None = no cap.  ``no_pin_limit_minor`` is None unless key 40 enables it."""

    purchase_minor: int | None = None
    refund_minor: int | None = None
    transfer_minor: int | None = None
    no_pin_limit_minor: int | None = None

    @classmethod
    def of(cls, values: ParamValues) -> TerminalCaps:
        no_pin = values.small_amount_limit_minor if values.small_amount_enabled else None
        return cls(
            values.purchase_cap_minor,
            values.refund_cap_minor,
            values.transfer_cap_minor,
            no_pin,
        )


@dataclass(frozen=True, slots=True)
class TerminalView:
    """What the switch knows of one terminal's management state."""

    terminal_id: str
    known: TerminalTms | None
    params: EffectiveParams
    capk_version: int
    aid_version: int
    offer: str | None  # target path of a package waiting for it
    digit: str = field(init=False)

    def __post_init__(self) -> None:
        known = self.known
        digit = processing_digit(
            known.held_param_version if known else None,
            self.params.version,
            self.offer is not None,
            held_capk=known.held_capk_version if known else None,
            current_capk=self.capk_version,
            held_aid=known.held_aid_version if known else None,
            current_aid=self.aid_version,
        )
        object.__setattr__(self, "digit", digit)

    @property
    def caps(self) -> TerminalCaps:
        return TerminalCaps.of(self.params.values)

    @property
    def identity(self) -> str | None:
        return self.known.identity if self.known else None


class TerminalManagement:
    """Terminal management over the TMS and IC stores (see the module docstring)."""

    def __init__(
        self, tms: TmsStore, ic: IcStore, *, max_age_s: float = DEFAULT_VIEW_MAX_AGE_S
    ) -> None:
        self.tms = tms
        self.ic = ic
        self.rollouts = RolloutService(tms)
        self.max_age_s = max_age_s
        self._views: RegistryCache[TerminalView] = RegistryCache("management views")
        self._ic_versions: tuple[float, dict[str, int]] | None = None
        #: Bumped when the IC sets change through this object: IC versions read
        #: before that are not kept.
        self._ic_generation = 0

    async def view(self, terminal_id: str, max_age_s: float | None = None) -> TerminalView:
        age = self.max_age_s if max_age_s is None else max_age_s
        cached = self._views.get(terminal_id, age)
        if cached is None:
            cached = await self._views.revalidated(terminal_id, age, self._revalidate)
        if cached is not None:
            return cached
        generation, started_s = self._views.generation, time.monotonic()
        row = await self.tms.management_view(terminal_id)
        versions = await self._versions(age)
        known = row.known
        view = TerminalView(
            terminal_id,
            known,
            effective(row.group_set, row.own_set, known.group_version if known else 0),
            versions[CAPK_KIND],
            versions[AID_KIND],
            row.offer,
        )
        self._views.put(terminal_id, view, generation, started_s, row.fingerprint)
        return view

    async def _revalidate(self, stale: dict[str, tuple[TerminalView, object]]) -> None:
        """Check the ``stale`` views against the store: each row's fingerprint
        (``TmsStore.view_fingerprints``, one query per 128 views) and the IC sets'
        versions.  An unchanged view counts as read when the check started; a
        changed one is dropped, to be read again."""
        started_s = time.monotonic()
        generation = self._ic_generation
        versions = await self.ic.versions()
        if generation == self._ic_generation:  # no IC change through this object since
            self._ic_versions = (started_s, versions)
        current = await self.tms.view_fingerprints(sorted(stale))
        capk, aid = versions[CAPK_KIND], versions[AID_KIND]
        self._views.settle(
            stale,
            started_s,
            lambda terminal_id, view, fingerprint: (
                current.get(terminal_id) == fingerprint
                and (view.capk_version, view.aid_version) == (capk, aid)
            ),
        )

    async def _versions(self, max_age_s: float) -> dict[str, int]:
        held = self._ic_versions
        if held is not None and max_age_s > 0 and time.monotonic() - held[0] <= max_age_s:
            return held[1]
        started_s, generation = time.monotonic(), self._ic_generation
        versions = await self.ic.versions()
        if generation == self._ic_generation:  # an IC change meanwhile: not kept
            self._ic_versions = (started_s, versions)
        return versions

    async def terminal_caps(self, terminal_id: str) -> TerminalCaps:
        """The terminal's caps and no-PIN limit (cached like ``view``)."""
        return (await self.view(terminal_id)).caps

    def forget(self, terminal_id: str | None = None) -> None:
        """A write changed ``terminal_id`` (None: every terminal, or the IC sets)."""
        self._views.forget(terminal_id)
        if terminal_id is None:
            self._ic_versions = None
            self._ic_generation += 1

    async def held_params(self, terminal_id: str, version: int) -> None:
        await self.tms.set_held_params(terminal_id, version)
        self.forget(terminal_id)

    async def held_ic(self, terminal_id: str, kind: str, version: int) -> None:
        await self.tms.set_held_ic(terminal_id, kind, version)
        self.forget(terminal_id)

    async def identity_seen(self, terminal_id: str, f59: str, identity: TerminalIdentity) -> bool:
        """Store an F59 identity unless it is the one already stored; True when stored."""
        view = await self.view(terminal_id)
        if view.identity == f59:
            return False
        await self.rollouts.status_upload(terminal_id, identity.app_version, identity=f59)
        self.forget(terminal_id)
        return True
