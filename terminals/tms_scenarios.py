"""Conformance scenarios of terminal management (terminal-link §1 digit 6, §8, §10).

These need the operator's side too (change a parameter set, add CAPK/AID,
publish a package and start a rollout): the target's ``operator``
(``TmsOperator``).  Without one the runner reports them PENDING.  They run last
in the catalogue: they leave a parameter set and rollout groups behind.
"""

from __future__ import annotations

from typing import Protocol

from terminals.conformance import Scenario, ScenarioContext, ScenarioFailed, expect_approved
from terminals.management import SoftwareLink
from terminals.outcome import Outcome
from terminals.session import TerminalSession
from terminals.updater import SIGNATURE_FAILURE

TMS_FEATURE = "tms"
CAP_MINOR = 5000
FIN, SETTLE, SIGNOFF = 0, 1, 2


class TmsOperator(Protocol):
    """What the TMS scenarios ask of the switch's operator."""

    async def set_params(self, **values: object) -> None:
        """Replace the default group's parameter set (terminal-link §10 values)."""

    async def add_ic(self) -> None:
        """Add a CAPK and an AID (both sets get a new version)."""

    async def offer_update(self, terminal_id: str, *, corrupt: bool) -> SoftwareLink:
        """Publish a new package (its bytes corrupted on the server when ``corrupt``),
        start a rollout to ``terminal_id`` and give the terminal's updater link."""

    async def install_state(self, terminal_id: str) -> tuple[str | None, str | None]:
        """The application version and last install result the switch stored."""


def _operator(ctx: ScenarioContext) -> TmsOperator:
    operator = ctx.target.operator
    if operator is None:
        raise ScenarioFailed("no TMS operator")
    return operator  # type: ignore[no-any-return]


async def _purchase(session: TerminalSession, ctx: ScenarioContext, amount_minor: int) -> Outcome:
    return await session.transact(lambda m: m.purchase(ctx.card, amount_minor))


async def _asked(session: TerminalSession, ctx: ScenarioContext, digits: str, step: str) -> None:
    """A purchase, and another when its answer's header digit 6 is one of ``digits``
    (the terminal runs the dialogue before it).  A terminal that had to sign in
    first already ran the dialogue its sign-in answer asked for: the held state
    checked by the caller tells either way."""
    expect_approved(await _purchase(session, ctx, 100), step)
    if session.machine.state.tms.processing in digits:
        expect_approved(await _purchase(session, ctx, 100), f"{step}, after the dialogue")


async def params_by_header(ctx: ScenarioContext) -> None:
    await _operator(ctx).set_params(merchant_name="Conformance TMS", hotline="95516")
    session = ctx.terminal(FIN)
    await _asked(session, ctx, "1", "purchase after the parameter change")
    held = session.machine.state.tms
    if held.merchant_name != "Conformance TMS" or held.processing != "0":
        raise ScenarioFailed(f"parameters not applied: {held.merchant_name!r}, {held.processing}")


async def params_reach_every_terminal(ctx: ScenarioContext) -> None:
    await _operator(ctx).set_params(purchase_cap_minor=CAP_MINOR)
    for index in (FIN, SETTLE, SIGNOFF):
        session = ctx.terminal(index)
        await _asked(session, ctx, "1", f"terminal {index + 1}: next purchase")
        if session.machine.state.tms.purchase_cap_minor != CAP_MINOR:
            raise ScenarioFailed(f"terminal {index + 1} did not receive the cap")
        over = await _purchase(session, ctx, CAP_MINOR + 1)
        if over.response_code != "61":
            raise ScenarioFailed(f"terminal {index + 1}: over the cap got {over.response_code}")
    await _operator(ctx).set_params()


async def ic_by_header(ctx: ScenarioContext) -> None:
    await _operator(ctx).add_ic()
    session = ctx.terminal(FIN)
    await _asked(session, ctx, "145", "purchase after the CAPK/AID change")
    held = session.machine.state.tms
    if not held.capks or not held.aids or held.processing != "0":
        raise ScenarioFailed(f"CAPK/AID not downloaded ({len(held.capks)}, {len(held.aids)})")


async def _offered(ctx: ScenarioContext, index: int, corrupt: bool) -> SoftwareLink:
    session = ctx.terminal(index)
    link = await _operator(ctx).offer_update(session.machine.config.terminal_id, corrupt=corrupt)
    session.software = link
    await _asked(session, ctx, "16", "purchase after the rollout started")
    return link


async def update_installed(ctx: ScenarioContext) -> None:
    link = await _offered(ctx, FIN, corrupt=False)
    installed = link.updater.software.app_version
    stored = await _operator(ctx).install_state(ctx.terminal(FIN).machine.config.terminal_id)
    if link.updater.software.last_result != "OK" or stored != (installed, "OK"):
        raise ScenarioFailed(f"not installed and reported: {stored}")


async def tampered_refused(ctx: ScenarioContext) -> None:
    link = await _offered(ctx, SETTLE, corrupt=True)
    software = link.updater.software
    stored = await _operator(ctx).install_state(ctx.terminal(SETTLE).machine.config.terminal_id)
    refused = f"{SIGNATURE_FAILURE}:tampered"
    if software.history or software.last_result != refused or stored[1] != refused:
        raise ScenarioFailed(f"tampered package not refused as {refused}: {stored}")


TMS_CATALOGUE: tuple[Scenario, ...] = (
    Scenario(
        "tms_params_by_header",
        "parameter download asked by header digit 1 (360 … 361), then the purchase succeeds",
        TMS_FEATURE,
        params_by_header,
    ),
    Scenario(
        "tms_params_every_terminal",
        "a changed parameter set reaches every terminal at its next transaction; cap → 61",
        TMS_FEATURE,
        params_reach_every_terminal,
    ),
    Scenario(
        "tms_ic_by_header",
        "CAPK/AID download asked by header digit 4/5, then the purchase succeeds",
        TMS_FEATURE,
        ic_by_header,
    ),
    Scenario(
        "tms_update_installed",
        "a software update offered by a rollout (digit 6) is installed and reported (362)",
        TMS_FEATURE,
        update_installed,
    ),
    Scenario(
        "tms_tampered_refused",
        "a tampered package is refused and reported as 验证签名失败",
        TMS_FEATURE,
        tampered_refused,
    ),
)
