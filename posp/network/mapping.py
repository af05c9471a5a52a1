"""Terminal-link request → network-link request, and back (pure; network-link.md §3).

Invariants:

* The network request carries the card data the terminal sent (2, 14, 22, 23, 35, 36,
  55), the amount and currency, the merchant's MCC (18) and name (43), the switch's
  RRN (37), the terminal's 60.1 (60) and, when a PIN was entered, F52 under the ZPK
  with F53 ``2600000000000000`` and F26.  It never carries F64, the terminal's F11 or
  F61: the link fills F7, F11, F32 and F33.
* Voids, refunds, pre-auth voids and completions reference their original through
  F90 = original network MTI + network STAN + F7 + acquirer id + forwarding id.
  When the caller does not pass the ids, F90's last 22 digits are zeros and
  ``NetworkLink.send`` fills in its own (the original went over the same link).
* A reversal (0420) is the original network request without PIN, track or chip
  data, with F39 = reason and F90 pointing at the original.
"""

from __future__ import annotations

from typing import Final

from posp.iso8583 import Message
from posp.iso8583.fields import OriginalData
from posp.store.api import JournalEntry, Merchant
from posp.txn import NetworkAccounts, TxnRow, txn_row

#: Terminal fields copied as they are.
_COPIED: Final = (2, 3, 4, 14, 22, 23, 25, 38, 41, 42, 49, 55)
#: Fields a reversal never carries (PIN, track, chip data, MAC).
_NOT_IN_REVERSAL: Final = (26, 35, 36, 52, 53, 55, 128)
#: Network response fields the switch copies into the terminal response.
RESPONSE_FIELDS: Final = (37, 38, 39, 15, 54, 44, 63)
PIN_SECURITY_CONTROL: Final = "2600000000000000"
ZERO_IDS: Final = "0" * 22


def merchant_name_an40(name: str) -> str:
    """F43: ASCII only (other characters become ``?``), cut or space-padded to 40."""
    ascii_name = name.encode("ascii", "replace").decode("ascii")
    return ascii_name[:40].ljust(40)


def original_data(
    original: JournalEntry, *, acquirer_id: str = "", forwarding_id: str = ""
) -> str | None:
    """F90 for an original journal entry, or None when it never reached the network."""
    row = txn_row(original.txn_type)
    mti = None if row is None else row.network_mti
    if mti is None or original.network_stan is None or original.network_f7 is None:
        return None
    return OriginalData(
        mti=mti,
        stan=original.network_stan,
        f7=original.network_f7,
        acquirer_id=acquirer_id.zfill(11) if acquirer_id else "0" * 11,
        forwarding_id=forwarding_id.zfill(11) if forwarding_id else "0" * 11,
    ).render()


def network_request(
    row: TxnRow,
    terminal_msg: Message,
    *,
    merchant: Merchant,
    pin_block_zpk: str | None,
    track2: str | None,
    track3: str | None,
    rrn: str,
    original: JournalEntry | None,
    acquirer_id: str = "",
    forwarding_id: str = "",
    pan: str | None = None,
    receiving_pan: str | None = None,
) -> Message:
    """Build the network request; ``ValueError`` for a type that goes nowhere upstream.
    ``pan`` (the card's, also from track 2) and ``receiving_pan`` (a transfer's F62
    card) fill F102/F103 as the row's ``network_accounts`` says (network-link §8)."""
    if row.network_mti is None:
        raise ValueError(f"{row.name} is not sent to the network")
    request = Message(row.network_mti)
    for n in _COPIED:
        value = terminal_msg.get(n)
        if value is not None:
            request[n] = value
    if track2:
        request[35] = track2
    if track3:
        request[36] = track3
    if pin_block_zpk:
        request[52] = bytes.fromhex(pin_block_zpk)
        request[53] = PIN_SECURITY_CONTROL
        request[26] = str(terminal_msg.get(26) or "12")
    request[18] = merchant.category_code
    request[43] = merchant_name_an40(merchant.name)
    request[37] = rrn
    f60 = terminal_msg.get(60)
    if isinstance(f60, str) and len(f60) >= 2:
        request[60] = f60[:2]
    _account_fields(row, request, pan, receiving_pan)
    if row.references_original and original is not None:
        f90 = original_data(original, acquirer_id=acquirer_id, forwarding_id=forwarding_id)
        if f90 is not None:
            request[90] = f90
    return request


def _account_fields(
    row: TxnRow, request: Message, pan: str | None, receiving_pan: str | None
) -> None:
    """F102 = paying account and F103 = receiving account (transfer), or F103 = the
    card itself (beneficiary check)."""
    if row.network_accounts is NetworkAccounts.PAYER_AND_PAYEE:
        if pan:
            request[102] = pan
        if receiving_pan:
            request[103] = receiving_pan
    elif row.network_accounts is NetworkAccounts.PAYEE and pan:
        request[103] = pan


def network_reversal(original_network_request: Message, reason_code: str = "98") -> Message:
    """0420 for a request already sent (it must carry the F7, F11, F32 the link set)."""
    original = original_network_request
    reversal = Message("0420", dict(original.fields))
    for n in (*_NOT_IN_REVERSAL, 7, 11, 39, 90):
        reversal.fields.pop(n, None)
    reversal[39] = str(reason_code)
    reversal[90] = OriginalData(
        mti=original.mti,
        stan=original.text(11),
        f7=original.text(7),
        acquirer_id=original.text(32).zfill(11),
        forwarding_id=str(original.get(33) or "").zfill(11),
    ).render()
    return reversal


def reversal_from_entry(
    entry: JournalEntry, reason_code: str, *, acquirer_id: str, forwarding_id: str
) -> Message | None:
    """0420 for a journaled request whose sent message is gone (the switch that sent
    it died): rebuilt from the journal alone, so it carries no PAN (the journal keeps
    none); the network finds the original by F90.  None when the entry never got
    network ids (it provably never left) or its type goes nowhere upstream."""
    row = txn_row(entry.txn_type)
    if row is None or row.network_mti is None or row.msg_type is None:
        return None
    if entry.network_stan is None or entry.network_f7 is None:
        return None
    reversal = Message("0420")
    if entry.processing_code:
        reversal[3] = entry.processing_code
    if entry.amount_minor is not None:
        reversal[4] = f"{entry.amount_minor:012d}"
    reversal[49] = entry.currency
    if entry.rrn is not None:
        reversal[37] = entry.rrn
    reversal[41] = entry.terminal_id
    reversal[42] = entry.merchant_id
    reversal[60] = row.msg_type
    reversal[32] = acquirer_id
    reversal[33] = forwarding_id
    reversal[39] = str(reason_code)
    reversal[90] = OriginalData(
        mti=row.network_mti,
        stan=entry.network_stan,
        f7=entry.network_f7,
        acquirer_id=acquirer_id.zfill(11),
        forwarding_id=forwarding_id.zfill(11),
    ).render()
    return reversal


def script_advice_from_entry(
    original: JournalEntry, f55: bytes, *, acquirer_id: str, forwarding_id: str
) -> Message | None:
    """0620 script result advice (network-link §8) for a journaled chip original: its
    reversal's fields without 39, with the card's F55 (DF31); F90 names the original.
    None when the original never reached the network."""
    advice = reversal_from_entry(
        original, "00", acquirer_id=acquirer_id, forwarding_id=forwarding_id
    )
    if advice is None:
        return None
    advice.mti = "0620"
    advice.fields.pop(39, None)
    advice[55] = f55
    return advice


def response_code(network_response: Message) -> str:
    """F39 of a network response; ``96`` when the network left it out."""
    code = network_response.get(39)
    return code if isinstance(code, str) and len(code) == 2 else "96"


def terminal_response_fields(network_response: Message) -> dict[int, str]:
    """39, 38, 37, 15, 54, 44, 63 from the network response, those present, for the
    terminal response (39 always present, ``96`` when the network omitted it)."""
    out: dict[int, str] = {}
    for n in RESPONSE_FIELDS:
        value = network_response.get(n)
        if isinstance(value, str):
            out[n] = value
    out[39] = response_code(network_response)
    return out
