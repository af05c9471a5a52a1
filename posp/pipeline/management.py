"""Terminal-management steps (terminal-link.md §8, §10): the terminal's
management view for header digit 6, its F59 identity, the caps it was given,
and the parameter, status and CAPK/AID dialogues.

Dialogues (all 60.1 ``00``, no MAC, as sign-in):
* 0800 ``360`` → F62 = the first run of parameter keys (``to_f62`` split at
  512 bytes); the answer's 60.3 is ``364`` when more follow (the terminal
  asks with 0800 ``364``, F62 = the next part's number n3) and ``361`` after
  the last.  0800 ``361`` (optional F62 = key ``90`` with the version the
  terminal applied) records the version the terminal now holds.
* 0820 ``362``: F62 = the status TLV; stored, and counted in rollouts.
* 0820 ``372`` / ``382``: F62 = ``1`` + start index n2 (``100`` = from the
  first); the answer's F62 = ``1`` more / ``2`` last / ``3`` none, then the
  identifying TLVs (9F06 + 9F22, or 9F06) that fit.  0800 ``370`` / ``380``
  with one identifying TLV answers its full TLV set (25 when the switch holds
  no such entry); 0800 ``371`` / ``381`` records the set version the terminal
  now holds.

Invariants: without terminal management (``services.tms`` None: no SQL store)
the steps change nothing and the dialogues answer 12; a malformed F59 or F62
answers 30 naming the field in the log, never its value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from posp.errors import DecodeError
from posp.iso8583.fields import Field60
from posp.iso8583.tlv import decode_f55
from posp.iso8583.tms_identity import TerminalIdentity, TerminalStatus
from posp.iso8583.tms_params import TerminalParameters, split_f62
from posp.log import get_logger
from posp.pipeline.codes import ResponseCode as RC
from posp.risk.lifecycle import DeviceIdentity
from posp.tms.ic import AID_KIND, CAPK_KIND
from posp.tms.params import cap_minor, to_f62
from posp.txn import CapKind

if TYPE_CHECKING:
    from posp.pipeline.context import TxnContext
    from posp.tms.service import TerminalManagement

MORE, LAST, NONE = b"1", b"2", b"3"
NEXT_PART: Final = "364"
END: Final = "361"
F62_MAX_BYTES: Final = 512
MERCHANT_NAME_BYTES: Final = 40

_log = get_logger("posp.pipeline.management")


def _tms(ctx: TxnContext) -> TerminalManagement | None:
    return ctx.services.tms


async def load_view(ctx: TxnContext) -> RC | None:
    """The terminal's management view (header digit 6, caps), cached per terminal."""
    tms = _tms(ctx)
    if tms is not None and ctx.terminal is not None:
        # Card transactions may use a view up to tms.view_max_age_s; management reads afresh.
        max_age_s = None if ctx.route.financial else 0.0
        ctx.tms_view = await tms.view(ctx.terminal.terminal_id, max_age_s)
    return None


async def record_identity(ctx: TxnContext) -> RC | None:
    """F59 (§10): parsed, stored when it changed, its A2/05 counted in rollouts."""
    f59 = ctx.message.get(59)
    if not isinstance(f59, str):
        return None
    try:
        identity = TerminalIdentity.parse(f59)
    except DecodeError as exc:
        _log.info("malformed terminal identity", field=exc.field, offset=exc.offset)
        return RC.FORMAT_ERROR
    # The device binding (posp.pipeline.lifecycle) reads the TUSN and SIM from it.
    ctx.device_identity = DeviceIdentity(identity.hardware_serial or "", identity.iccid or "")
    tms = _tms(ctx)
    if tms is None or ctx.terminal is None:
        return None
    if await tms.identity_seen(ctx.terminal.terminal_id, f59, identity):
        ctx.tms_view = await tms.view(ctx.terminal.terminal_id)
    return None


def _cap_minor(ctx: TxnContext, kind: CapKind) -> int | None:
    """The terminal's own cap of ``kind`` (its TMS parameters), else the switch's
    default for that kind (``limits.transfer_cap_minor``; purchases and refunds
    have none), None when neither limits it."""
    view = ctx.tms_view
    own = cap_minor(kind, view.params.values) if view is not None else None
    if own is not None:
        return own
    return ctx.services.settings.limits.transfer_cap_minor if kind is CapKind.TRANSFER else None


async def check_caps(ctx: TxnContext) -> RC | None:
    """61 when the amount exceeds the terminal's single cap for this type (the
    row's ``cap``), before anything is journaled or sent; checked again on a view
    read afresh before refusing, as the registry checks do."""
    kind = ctx.route.row.cap
    amount = ctx.message.get(4)
    if kind is None or not isinstance(amount, str) or not amount.isdigit():
        return None
    limit = _cap_minor(ctx, kind)
    if limit is None or int(amount) <= limit:
        return None
    tms = _tms(ctx)
    if tms is not None and ctx.terminal is not None:  # refuse only on a fresh view
        ctx.tms_view = await tms.view(ctx.terminal.terminal_id, 0.0)
        limit = _cap_minor(ctx, kind)
        if limit is None or int(amount) <= limit:
            return None
    _log.info("amount over the terminal's cap", cap=kind.value, cap_minor=limit)
    return RC.EXCEEDS_AMOUNT_LIMIT


def _merchant_name(name: str) -> str | None:
    """The registry's merchant name cut to key 22's 40 GBK bytes (None if not GBK)."""
    try:
        while len(name.encode("gbk")) > MERCHANT_NAME_BYTES:
            name = name[:-1]
    except UnicodeEncodeError:
        return None
    return name.rstrip(" ") or None


def _answer_net_code(ctx: TxnContext, net_code: str) -> None:
    ctx.response_f60 = Field60("00", ctx.f60.batch, net_code).render()


async def download_params(ctx: TxnContext) -> RC | None:
    """0800 360 / 364: one part of the terminal's parameters in F62."""
    if _tms(ctx) is None or ctx.tms_view is None or ctx.terminal is None:
        return RC.INVALID_TRANSACTION
    view, terminal = ctx.tms_view, ctx.terminal
    params = to_f62(
        view.params,
        terminal_id=terminal.terminal_id,
        merchant_id=terminal.merchant_id,
        batch=terminal.batch,
    )
    if params.merchant_name is None and ctx.merchant is not None:
        name = _merchant_name(ctx.merchant.name)
        params = params.merged(TerminalParameters(merchant_name=name))
    parts = split_f62(params, F62_MAX_BYTES)
    part = 0
    if ctx.f60.net_code == NEXT_PART:
        raw = ctx.message.get(62)
        if not isinstance(raw, bytes) or not raw.isdigit() or not 0 < int(raw) < len(parts):
            _log.info("parameter continuation names no part", parts=len(parts))
            return RC.FORMAT_ERROR
        part = int(raw)
    ctx.response[62] = parts[part]
    _answer_net_code(ctx, NEXT_PART if part + 1 < len(parts) else END)
    return RC.APPROVED


async def end_params(ctx: TxnContext) -> RC | None:
    """0800 361: the terminal now holds the version it applied (key 90) or the current one."""
    tms = _tms(ctx)
    if tms is None or ctx.tms_view is None or ctx.terminal is None:
        return RC.INVALID_TRANSACTION
    version = ctx.tms_view.params.version
    raw = ctx.message.get(62)
    if isinstance(raw, bytes) and raw:
        applied = TerminalParameters.parse(raw).version  # DecodeError → 30
        # Never above the current set: a terminal cannot talk itself out of a download.
        version = min(applied, version) if applied is not None else version
    await tms.held_params(ctx.terminal.terminal_id, version)
    ctx.tms_view = await tms.view(ctx.terminal.terminal_id)
    _log.info("parameters downloaded", version=version)
    return RC.APPROVED


async def status_upload(ctx: TxnContext) -> RC | None:
    """0820 362: the status TLV stored; a new version or a failure counts in rollouts."""
    tms = _tms(ctx)
    raw = ctx.message.get(62)
    if tms is None or ctx.terminal is None:
        return RC.INVALID_TRANSACTION
    if not isinstance(raw, bytes):
        return RC.FORMAT_ERROR
    status = TerminalStatus.parse(raw)  # DecodeError → 30
    held = {t: v for t, v in ((a, getattr(status, a)) for a in _STATUS_ATTRS) if v is not None}
    terminal_id = ctx.terminal.terminal_id
    await tms.rollouts.status_upload(
        terminal_id,
        status.app_version,
        status.install_result,
        status={**held, **dict(status.extra)},
    )
    tms.forget(terminal_id)
    ctx.tms_view = await tms.view(ctx.terminal.terminal_id)
    _log.info("status uploaded", app_version=status.app_version, result=status.install_result)
    return RC.APPROVED


_STATUS_ATTRS: Final = (
    "param_version",
    "capk_version",
    "aid_version",
    "app_version",
    "tamper",
    "install_result",
)


async def _entries(ctx: TxnContext, kind: str) -> list[tuple[bytes, bytes]]:
    """(identifying TLV, full TLV) of every entry of ``kind`` the switch holds."""
    tms = _tms(ctx)
    assert tms is not None
    found = await (tms.ic.capks() if kind == CAPK_KIND else tms.ic.aids())
    return [(e.ident_tlv(), e.tlv()) for e in found]


def _kind(ctx: TxnContext) -> str:
    """CAPK for 37x, AID for 38x (the network-management code's second digit)."""
    return CAPK_KIND if ctx.f60.net_code[1] == "7" else AID_KIND


async def list_ic(ctx: TxnContext) -> RC | None:
    """0820 372 / 382: status char, then the identifying TLVs from the start index."""
    if _tms(ctx) is None:
        return RC.INVALID_TRANSACTION
    raw = ctx.message.get(62)
    if not isinstance(raw, bytes) or len(raw) < 2 or raw[:1] != b"1" or not raw[1:].isdigit():
        _log.info("IC parameter list request without 1 + start index in F62")
        return RC.FORMAT_ERROR
    entries = await _entries(ctx, _kind(ctx))
    start = int(raw[1:])
    if start >= len(entries):
        ctx.response[62] = NONE
        return RC.APPROVED
    body = b""
    end = start
    while end < len(entries) and len(body) + len(entries[end][0]) < F62_MAX_BYTES:
        body += entries[end][0]
        end += 1
    ctx.response[62] = (MORE if end < len(entries) else LAST) + body
    return RC.APPROVED


async def download_ic(ctx: TxnContext) -> RC | None:
    """0800 370 / 380: the full TLV set of the entry F62 identifies."""
    if _tms(ctx) is None:
        return RC.INVALID_TRANSACTION
    raw = ctx.message.get(62)
    if not isinstance(raw, bytes):
        return RC.FORMAT_ERROR
    asked = decode_f55(raw, field=62)  # DecodeError → 30
    wanted = {t: v for t in ("9F06", "9F22") if (v := asked.get(t)) is not None}
    for ident, full in await _entries(ctx, _kind(ctx)):
        if decode_f55(ident, field=62).values() == wanted:
            ctx.response[62] = full
            return RC.APPROVED
    _log.info("IC parameter download names no held entry")
    return RC.ORIGINAL_NOT_FOUND


async def end_ic(ctx: TxnContext) -> RC | None:
    """0800 371 / 381: the terminal now holds the switch's current set of that kind."""
    tms = _tms(ctx)
    if tms is None or ctx.terminal is None:
        return RC.INVALID_TRANSACTION
    kind = _kind(ctx)
    version = (await tms.ic.versions())[kind]
    await tms.held_ic(ctx.terminal.terminal_id, kind, version)
    ctx.tms_view = await tms.view(ctx.terminal.terminal_id)
    _log.info("IC parameters downloaded", kind=kind, version=version)
    return RC.APPROVED
