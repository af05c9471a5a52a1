"""Pure wire codec of the payShield-style host protocol, client side.

Request builders return ``command code + fields`` as ASCII bytes, without the
message header and without the 2-byte length prefix (the transport adds both).
Response parsers take the reply *after* the header: response code, error code,
fields.  Layouts follow ``hsm-reference.md`` §4 and ``hsm_sim/README.md``.

Invariants:
* :func:`check_response` is the only place that reads the response and error
  codes; a non-zero code (other than a command's advice-only warnings) raises
  the typed exception from :func:`posp.errors.hsm_error_for`.
* Nothing here logs or formats key material into an exception message.
* Hex is upper case on the wire; M-series lengths are 4H, B2's is 4N decimal.
"""

from __future__ import annotations

from posp.errors import HsmError, hsm_error_for
from posp.hsm.results import (
    MAC_ALG_X919_FULL,
    Diagnostics,
    ExportedKey,
    GeneratedKey,
    ImportedKey,
    TranslatedPin,
)

#: Error codes that are "advice only" for a command: the fields still follow.
ADVICE_ONLY: dict[bytes, frozenset[bytes]] = {
    b"A6": frozenset({b"01"}),
    b"FA": frozenset({b"01"}),
    b"FK": frozenset({b"01"}),
}

#: Widths of a key field by its scheme tag (hsm-reference §2); anything else is 16H.
_KEY_WIDTH_BY_TAG = {ord("U"): 33, ord("X"): 33, ord("T"): 49, ord("Y"): 49}
#: BU key length flag by scheme tag: 0 single, 1 double, 2 triple.
_LENGTH_FLAG_BY_TAG = {"U": b"1", "X": b"1", "T": b"2", "Y": b"2"}


def response_code_for(command: bytes) -> bytes:
    """The response code of ``command``: its second character incremented (A0 -> A1)."""
    code = _RESPONSE_CODES.get(command)
    if code is None:
        code = _RESPONSE_CODES[command] = command[:1] + bytes((command[1] + 1,))
    return code


_RESPONSE_CODES: dict[bytes, bytes] = {}  # the client sends a few dozen codes at most


def format_header(counter: int, length: int) -> bytes:
    """A numeric message header of ``length`` digits (zero-padded, wrapped)."""
    if length == 0:
        return b""
    return b"%0*d" % (length, counter % (10**length))


def check_response(command: bytes, response: bytes) -> bytes:
    """Validate a reply (after the header) to ``command`` and return its fields.

    Raises :class:`HsmError` on a wrong or short response code and the typed
    ``HsmCommandError`` on a non-zero error code; the command's advice-only
    codes return the fields like ``00``.
    """
    if len(response) < 4 or response[:2] != response_code_for(command):
        raise HsmError(
            f"HSM answered {command.decode('ascii', 'replace')} with an unexpected response code"
        )
    if not response.isascii():
        raise HsmError(f"HSM answered {command.decode('ascii', 'replace')} with non-ASCII bytes")
    error = response[2:4]
    if error != b"00" and error not in ADVICE_ONLY.get(command, ()):
        raise hsm_error_for(command.decode("ascii"), error.decode("ascii", "replace"))
    return response[4:]


def split_key(fields: bytes, offset: int = 0) -> tuple[str, int]:
    """Read one self-delimiting key field at ``offset``; return it and the next offset."""
    if offset >= len(fields):
        raise HsmError("HSM response too short: key field missing")
    width = _KEY_WIDTH_BY_TAG.get(fields[offset], 16)
    end = offset + width
    if end > len(fields):
        raise HsmError("HSM response too short: key field truncated")
    return fields[offset:end].decode("ascii"), end


# --- diagnostics and echo ------------------------------------------------------


def build_echo(data: str) -> bytes:
    raw = data.encode()
    return b"B2%04d%b" % (len(raw), raw)


def parse_echo(response: bytes) -> str:
    return check_response(b"B2", response).decode("ascii")


def build_diagnostics() -> bytes:
    return b"NC"


def parse_diagnostics(response: bytes) -> Diagnostics:
    fields = check_response(b"NC", response)
    if len(fields) < 16:
        raise HsmError("HSM response too short: NC")
    return Diagnostics(lmk_check=fields[:16].decode("ascii"), firmware=fields[16:].decode("ascii"))


# --- key management ----------------------------------------------------------


def build_generate_key(
    key_type: str,
    lmk_scheme: str,
    export_under: str | None,
    export_kind: str,
    export_scheme: str,
) -> bytes:
    if export_under is None:
        return b"A00%b%b" % (key_type.encode(), lmk_scheme.encode())
    flag = b"1" if export_kind == "tmk" else b"0"
    return b"A01%b%b;%b%b%b" % (
        key_type.encode(),
        lmk_scheme.encode(),
        flag,
        export_under.encode(),
        export_scheme.encode(),
    )


def parse_generate_key(response: bytes, exported: bool) -> GeneratedKey:
    fields = check_response(b"A0", response)
    under_lmk, offset = split_key(fields)
    under_wrap = None
    if exported:
        under_wrap, offset = split_key(fields, offset)
    return GeneratedKey(under_lmk=under_lmk, kcv=_kcv6(fields, offset), under_wrap=under_wrap)


def _kcv6(fields: bytes, offset: int) -> str:
    kcv = fields[offset : offset + 6]
    if len(kcv) != 6:
        raise HsmError("HSM response too short: check value missing")
    return kcv.decode("ascii")


def build_check_value(key_type: str, key: str, full: bool) -> bytes:
    flag = _LENGTH_FLAG_BY_TAG.get(key[:1], b"0")
    kcv_type = b"0" if full else b"1"
    return b"BUFF%b%b;%b;00%b" % (flag, key.encode(), key_type.encode(), kcv_type)


def parse_check_value(response: bytes) -> str:
    return check_response(b"BU", response).decode("ascii")


def build_import_key(key_type: str, zmk: str, key_under_zmk: str, lmk_scheme: str) -> bytes:
    return b"A6%b%b%b%b" % (
        key_type.encode(),
        zmk.encode(),
        key_under_zmk.encode(),
        lmk_scheme.encode(),
    )


def build_export_key(key_type: str, zmk: str, key_under_lmk: str, zmk_scheme: str) -> bytes:
    return b"A8%b%b%b%b" % (
        key_type.encode(),
        zmk.encode(),
        key_under_lmk.encode(),
        zmk_scheme.encode(),
    )


def parse_imported(command: bytes, response: bytes) -> ImportedKey:
    """A6/FA/FK/A4/K0 replies: a key under the LMK and a 6H check value."""
    fields = check_response(command, response)
    key, offset = split_key(fields)
    return ImportedKey(under_lmk=key, kcv=_kcv6(fields, offset))


def parse_export_key(response: bytes) -> ExportedKey:
    fields = check_response(b"A8", response)
    key, offset = split_key(fields)
    return ExportedKey(under_zmk=key, kcv=_kcv6(fields, offset))


def build_import_zpk(zmk: str, zpk_under_zmk: str) -> bytes:
    return b"FA%b%b;0U1" % (zmk.encode(), zpk_under_zmk.encode())


def build_import_zak(zmk: str, zak_under_zmk: str) -> bytes:
    return b"FK1%b%b;0U1" % (zmk.encode(), zak_under_zmk.encode())


def build_key_under_tmk(command: bytes, tmk: str, key: str, scheme: str) -> bytes:
    """AE (TPK/TMK/PVK) or AG (TAK): a key from the LMK to under a TMK."""
    return b"%b%b%b;%b00" % (command, tmk.encode(), key.encode(), scheme.encode())


def parse_key_under_tmk(command: bytes, response: bytes) -> str:
    key, _ = split_key(check_response(command, response))
    return key


def build_generate_component(key_type: str, lmk_scheme: str) -> bytes:
    return b"A2%b%b" % (key_type.encode(), lmk_scheme.encode())


def parse_generate_component(response: bytes) -> tuple[str, str]:
    """A3: the component under the LMK (K), then the clear component (untagged hex)."""
    fields = check_response(b"A2", response)
    under_lmk, offset = split_key(fields)
    clear = fields[offset:].decode("ascii")
    if len(clear) not in (16, 32, 48):
        raise HsmError("HSM response malformed: A3 clear component")
    return clear, under_lmk


def build_form_key(key_type: str, components_under_lmk: list[str], lmk_scheme: str) -> bytes:
    """A4: count 1N + key type 3H + LMK scheme 1A + the components under the LMK."""
    _check_component_count(components_under_lmk, 2)
    return b"A4%d%b%b%b" % (
        len(components_under_lmk),
        key_type.encode(),
        lmk_scheme.encode(),
        "".join(components_under_lmk).encode(),
    )


def build_form_key_clear(key_type: str, clear_components: list[str], lmk_scheme: str) -> bytes:
    """K0: key type 3H + LMK scheme 1A + count 1N + the clear components."""
    _check_component_count(clear_components, 1)
    return b"K0%b%b%d%b" % (
        key_type.encode(),
        lmk_scheme.encode(),
        len(clear_components),
        "".join(clear_components).encode(),
    )


def _check_component_count(components: list[str], minimum: int) -> None:
    if not minimum <= len(components) <= 9:
        raise ValueError(f"between {minimum} and 9 key components are needed")


# --- PIN ---------------------------------------------------------------------


def build_translate_pin(
    command: bytes,
    src_key: str,
    dst_key: str,
    pin_block: str,
    account12: str,
    src_format: str,
    dst_format: str,
    max_pin_length: int,
) -> bytes:
    """CA (TPK->ZPK) or CC (ZPK->ZPK)."""
    return b"%b%b%b%02d%b%b%b%b" % (
        command,
        src_key.encode(),
        dst_key.encode(),
        max_pin_length,
        pin_block.encode(),
        src_format.encode(),
        dst_format.encode(),
        account12.encode(),
    )


def parse_translate_pin(command: bytes, response: bytes) -> TranslatedPin:
    fields = check_response(command, response)
    if len(fields) < 20 or not fields[:2].isdigit():
        raise HsmError("HSM response malformed: PIN translation fields")
    return TranslatedPin(
        pin_length=int(fields[:2]),
        pin_block=fields[2:18].decode("ascii"),
        pin_format=fields[18:20].decode("ascii"),
    )


def build_encrypt_pin(pin: str, account12: str) -> bytes:
    # The clear PIN is left-justified and F-padded to the LMK-PIN length (L + 1).
    return b"BA%bF%b" % (pin.encode(), account12.encode())


def parse_fields_text(command: bytes, response: bytes) -> str:
    """Replies whose only field is the rest of the message (BB, DH)."""
    return check_response(command, response).decode("ascii")


def build_generate_pvv(pvk_pair: str, lmk_pin: str, account12: str, pvki: str) -> bytes:
    return b"DG%b%b%b%b" % (pvk_pair.encode(), lmk_pin.encode(), account12.encode(), pvki.encode())


def build_verify_pin_pvv(
    command: bytes,
    pin_key: str,
    pvk_pair: str,
    pin_block: str,
    pin_format: str,
    account12: str,
    pvki: str,
    pvv: str,
) -> bytes:
    """DC (TPK) or EC (ZPK): verify a PIN block against a Visa PVV."""
    return b"%b%b%b%b%b%b%b%b" % (
        command,
        pin_key.encode(),
        pvk_pair.encode(),
        pin_block.encode(),
        pin_format.encode(),
        account12.encode(),
        pvki.encode(),
        pvv.encode(),
    )


def parse_verify(command: bytes, response: bytes) -> bool:
    """DD/ED/M9: True on 00, False on error 01; other codes raise."""
    if response[2:4] == b"01" and response[:2] == response_code_for(command):
        return False
    check_response(command, response)
    return True


# --- data and MAC ------------------------------------------------------------


def build_decrypt_data(key_type: str, key: str, data_hex: str) -> bytes:
    """M2 mode 00 (ECB), hex in and hex out; the length counts hex characters."""
    return b"M20011%b%b%04X%b" % (key_type.encode(), key.encode(), len(data_hex), data_hex.encode())


def parse_decrypt_data(response: bytes) -> str:
    fields = check_response(b"M2", response)
    try:
        length = int(fields[:4], 16)
    except ValueError:
        raise HsmError("HSM response malformed: M3 length") from None
    data = fields[4 : 4 + length]
    if len(data) != length:
        raise HsmError("HSM response too short: M3 data")
    return data.decode("ascii")


def build_mac(
    command: bytes,
    key_type: str,
    key: str,
    data: bytes,
    algorithm: str,
    padding: str,
    mac: bytes | None = None,
) -> bytes:
    """M6 (``mac`` None) or M8: mode 0, binary input, 4H length; M8 appends the MAC as hex."""
    request = b"%b00%b%b%b%b%04X%b" % (
        command,
        algorithm.encode(),
        padding.encode(),
        key_type.encode(),
        key.encode(),
        len(data),
        data,
    )
    if mac is None:
        return request
    return request + mac.hex().upper().encode("ascii")


def parse_mac(response: bytes, algorithm: str) -> bytes:
    """M7: 8H (4 bytes) for 01/03; 16H for 13 (8 bytes) and 09 (the 8 ASCII characters)."""
    fields = check_response(b"M6", response)
    width = 16 if algorithm in (MAC_ALG_X919_FULL, "09") else 8
    if len(fields) < width:
        raise HsmError("HSM response too short: M7 MAC")
    try:
        return bytes.fromhex(fields[:width].decode("ascii"))
    except ValueError:
        raise HsmError("HSM response malformed: M7 MAC") from None
