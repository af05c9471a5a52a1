"""The simulated terminal's side of terminal management (terminal-link §8, §10):
it acts on the header's processing-requirement digit before its next transaction.

* ``1``: 0800 ``360`` (and ``364`` while the answer's 60.3 says more follow),
  applies the parameters (caps, no-PIN limit, merchant name), ends with
  0800 ``361`` carrying key ``90`` = the version it applied.
* ``4`` / ``5``: 0820 ``372`` / ``382`` lists the switch's entries (``1`` +
  start index), 0800 ``370`` / ``380`` fetches each full TLV set, 0800
  ``371`` / ``381`` ends.
* ``6``: asks the TMS endpoint for its offer, runs its TUF updater (in a
  thread: python-tuf's fetcher blocks), then uploads its status (0820
  ``362``) and sends its new version in F59 A2/05 from then on.

Invariants: each step is one exchange through the session (so deadlines and
reversal rules hold); a refused or failed step stops the run (the digit of the
next answer asks again); at most ``MAX_STEPS`` dialogues per run, so a switch
that keeps asking cannot hold the terminal forever.  Parameters apply only
once the whole set arrived; a refused package keeps the old version
(``TerminalUpdater``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from posp.iso8583.fields import Field60
from posp.iso8583.tlv import Tlv, decode_f55, encode_tlvs
from posp.iso8583.tms_identity import TerminalIdentity
from posp.iso8583.tms_params import TerminalParameters
from terminals.outcome import Outcome
from terminals.txn import TxnKind
from terminals.updater import TerminalUpdater

if TYPE_CHECKING:
    from terminals.session import TerminalSession

MAX_STEPS: Final = 4
MORE, LAST, NONE = b"1", b"2", b"3"
_REQUEST, _REPORT = TxnKind.MANAGEMENT_REQUEST, TxnKind.MANAGEMENT_REPORT
#: digit → (list, download, end) 60.3 codes and the state attribute holding the set.
IC_DIALOGUES: Final = {"4": ("372", "370", "371", "capks"), "5": ("382", "380", "381", "aids")}

OfferLookup = Callable[[str], Awaitable[str | None]]


@dataclass
class SoftwareLink:
    """What digit 6 needs: the terminal's updater and where to ask for its offer."""

    updater: TerminalUpdater
    offers: OfferLookup


def http_offers(base_url: str, timeout_s: float = 5.0) -> OfferLookup:
    """Offer lookup over the TMS endpoint's ``GET /offers/<terminal id>``."""
    import aiohttp

    async def lookup(terminal_id: str) -> str | None:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"{base_url.rstrip('/')}/offers/{terminal_id}") as answer,
        ):
            if answer.status != 200:
                return None
            target = (await answer.json()).get("target")
            return str(target) if target else None

    return lookup


async def run_management(
    session: TerminalSession, software: SoftwareLink | None = None
) -> list[Outcome]:
    """The dialogues the last answer's digit 6 asks for, until it asks for nothing."""
    outcomes: list[Outcome] = []
    tms = session.machine.state.tms
    for _ in range(MAX_STEPS):
        digit = tms.processing
        if digit == "1":
            done = await download_parameters(session, outcomes)
        elif digit in IC_DIALOGUES:
            done = await download_ic(session, digit, outcomes)
        elif digit == "6" and software is not None:
            done = await install_update(session, software, outcomes)
        else:
            break
        if not done:
            break
    return outcomes


async def _step(
    session: TerminalSession, outcomes: list[Outcome], kind: TxnKind, code: str, f62: bytes | None
) -> Outcome | None:
    outcome = await session.exchange(session.machine.management(kind, code, f62))
    outcomes.append(outcome)
    return outcome if outcome.approved and outcome.message is not None else None


def _f62(outcome: Outcome) -> bytes:
    assert outcome.message is not None
    value = outcome.message.get(62)
    return value if isinstance(value, bytes) else b""


async def download_parameters(session: TerminalSession, outcomes: list[Outcome]) -> bool:
    received = TerminalParameters()
    part, code = 0, "360"
    while True:
        f62 = None if part == 0 else f"{part:03d}".encode()
        answer = await _step(session, outcomes, _REQUEST, code, f62)
        if answer is None:
            return False
        received = received.merged(TerminalParameters.parse(_f62(answer)))
        assert answer.message is not None
        if Field60.parse(answer.message.text(60)).net_code != "364":
            break
        part, code = part + 1, "364"
    _apply(session, received)
    end = TerminalParameters(version=received.version).render() if received.version else None
    return await _step(session, outcomes, _REQUEST, "361", end) is not None


def _apply(session: TerminalSession, params: TerminalParameters) -> None:
    tms = session.machine.state.tms
    tms.param_version = params.version
    tms.merchant_name = params.merchant_name
    tms.purchase_cap_minor = params.purchase_cap_minor
    tms.refund_cap_minor = params.refund_cap_minor
    tms.transfer_cap_minor = params.transfer_cap_minor
    small = params.small_amount
    tms.no_pin_limit_minor = small.limit_minor if small is not None and small.enabled else None


def split_entries(items: list[Tlv]) -> list[bytes]:
    """Identifying TLVs of a list answer: each entry starts at a 9F06."""
    groups: list[list[Tlv]] = []
    for item in items:
        if item.tag == "9F06" or not groups:
            groups.append([])
        groups[-1].append(item)
    return [encode_tlvs(group) for group in groups]


async def download_ic(session: TerminalSession, digit: str, outcomes: list[Outcome]) -> bool:
    list_code, download_code, end_code, attr = IC_DIALOGUES[digit]
    idents: list[bytes] = []
    while True:
        answer = await _step(session, outcomes, _REPORT, list_code, b"1%02d" % len(idents))
        if answer is None:
            return False
        f62 = _f62(answer)
        if f62[:1] not in (MORE, LAST):
            break
        idents += split_entries(list(decode_f55(f62[1:], field=62)))
        if f62[:1] == LAST:
            break
    held: list[str] = []
    for ident in idents:
        answer = await _step(session, outcomes, _REQUEST, download_code, ident)
        if answer is None:
            return False
        held.append(_f62(answer).hex().upper())
    setattr(session.machine.state.tms, attr, held)
    return await _step(session, outcomes, _REQUEST, end_code, None) is not None


#: Threads that run updaters (TUF downloads and verification block).
_INSTALLS: Final = ThreadPoolExecutor(max_workers=8, thread_name_prefix="terminal-update")


async def install_update(
    session: TerminalSession, software: SoftwareLink, outcomes: list[Outcome]
) -> bool:
    """Fetch, verify and install the offered package, then report by 362 and F59."""
    machine = session.machine
    target = await software.offers(machine.config.terminal_id)
    if target is None:
        return False
    # Its own threads: the updater blocks on HTTP, and a TMS endpoint in this very
    # process (a lab) may need the default executor to answer it.
    await asyncio.get_running_loop().run_in_executor(_INSTALLS, software.updater.install, target)
    report_status(session, software)
    version = str(machine.state.tms.param_version or "") or None
    status = software.updater.software.status(version).render()
    return await _step(session, outcomes, _REPORT, "362", status) is not None


def report_status(session: TerminalSession, software: SoftwareLink) -> None:
    """From now on the terminal's F59 carries its (new) application version."""
    tms = session.machine.state.tms
    current = TerminalIdentity.parse(tms.identity) if tms.identity else TerminalIdentity()
    updated = replace(current, app_version=software.updater.software.app_version)
    tms.identity = updated.render()
