"""IC parameter sets the terminals download (terminal-link.md §8): CA public keys
(CAPK) and AID parameters, validated once when the operator enters them and
kept as the BER-TLV run a 370 / 380 answer carries.

Invariants:
* A ``Capk`` only exists with a check value that matches: DF03 = SHA-1 over
  RID ‖ index ‖ modulus ‖ exponent (EMV Book 2, §5.2 / Annex B); RID is 5
  bytes, the index 1 byte, the exponent 3 or 65537, the expiry a real date.
* An ``Aid`` is 5–16 bytes; every optional parameter has the fixed width its
  tag has in the PBOC / UICS terminal parameter table.
* ``tlv()`` is the full TLV set in a fixed tag order, built with
  ``posp.iso8583.tlv``; ``ident_tlv()`` is what a terminal sends in 370/380.
* A validation error names the field (pydantic's location), never a key value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from posp.iso8583.tlv import build_f55

CAPK_KIND: Final = "capk"
AID_KIND: Final = "aid"
EXPONENTS: Final = frozenset({"03", "010001"})


def _hex(min_bytes: int, max_bytes: int) -> AfterValidator:
    def check(value: str) -> str:
        text = value.strip().upper()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("must be hexadecimal") from None
        if not min_bytes <= len(raw) <= max_bytes:
            span = f"{min_bytes}" if min_bytes == max_bytes else f"{min_bytes}-{max_bytes}"
            raise ValueError(f"must be {span} bytes")
        return raw.hex().upper()

    return AfterValidator(check)


def _yymmdd(value: str) -> str:
    try:
        dt.datetime.strptime(value, "%y%m%d")
    except ValueError:
        raise ValueError("must be a date YYMMDD") from None
    return value


def _exponent(value: str) -> str:
    if value not in EXPONENTS:
        raise ValueError("must be 03 or 010001")
    return value


class Capk(BaseModel):
    """One CA public key (RID 9F06, index 9F22, modulus DF02, exponent DF04,
    expiry DF05 as BCD YYMMDD, hash DF03)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rid: Annotated[str, _hex(5, 5)]
    index: Annotated[str, _hex(1, 1)]
    modulus: Annotated[str, _hex(64, 248)]
    exponent: Annotated[str, _hex(1, 3), AfterValidator(_exponent)]
    expiry: Annotated[str, Field(pattern=r"^\d{6}$"), AfterValidator(_yymmdd)]
    hash: Annotated[str, _hex(20, 20)]

    @model_validator(mode="after")
    def _check_hash(self) -> Capk:
        if self.hash != capk_hash(self.rid, self.index, self.modulus, self.exponent):
            raise ValueError("hash (DF03) is not SHA-1 of RID, index, modulus and exponent")
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.rid, self.index)

    def ident_tlv(self) -> bytes:
        return build_f55([("9F06", bytes.fromhex(self.rid)), ("9F22", bytes.fromhex(self.index))])

    def tlv(self) -> bytes:
        return build_f55(
            [
                ("9F06", bytes.fromhex(self.rid)),
                ("9F22", bytes.fromhex(self.index)),
                ("DF05", bytes.fromhex(self.expiry)),
                ("DF06", b"\x01"),  # hash algorithm: SHA-1
                ("DF07", b"\x01"),  # public key algorithm: RSA
                ("DF02", bytes.fromhex(self.modulus)),
                ("DF04", bytes.fromhex(self.exponent)),
                ("DF03", bytes.fromhex(self.hash)),
            ]
        )


def capk_hash(rid: str, index: str, modulus: str, exponent: str) -> str:
    """DF03: SHA-1 of RID ‖ index ‖ modulus ‖ exponent, upper-case hex."""
    data = bytes.fromhex(rid + index + modulus + exponent)
    return hashlib.sha1(data, usedforsecurity=False).hexdigest().upper()


Amount = Annotated[int, Field(ge=0, le=10**12 - 1)]


class Aid(BaseModel):
    """One AID's terminal parameters (§8: 9F06, DF01, 9F09, DF11–DF13, 9F1B,
    DF15–DF17, DF18, 9F7B)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aid: Annotated[str, _hex(5, 16)]
    partial_select: bool = True  # DF01 00 = partial match allowed, 01 = exact
    app_version: Annotated[str, _hex(2, 2)] = "0020"
    tac_default: Annotated[str, _hex(5, 5)] = "0000000000"
    tac_denial: Annotated[str, _hex(5, 5)] = "0000000000"
    tac_online: Annotated[str, _hex(5, 5)] = "0000000000"
    floor_limit_minor: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    threshold_minor: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    max_target_pct: Annotated[int, Field(ge=0, le=99)] = 0
    target_pct: Annotated[int, Field(ge=0, le=99)] = 0
    online_pin: bool = True
    ec_limit_minor: Amount = 0

    @model_validator(mode="after")
    def _check_targets(self) -> Aid:
        if self.target_pct > self.max_target_pct:
            raise ValueError("target_pct must not exceed max_target_pct")
        return self

    @property
    def key(self) -> str:
        return self.aid

    def ident_tlv(self) -> bytes:
        return build_f55([("9F06", bytes.fromhex(self.aid))])

    def tlv(self) -> bytes:
        return build_f55(
            [
                ("9F06", bytes.fromhex(self.aid)),
                ("DF01", b"\x00" if self.partial_select else b"\x01"),
                ("9F09", bytes.fromhex(self.app_version)),
                ("DF11", bytes.fromhex(self.tac_default)),
                ("DF12", bytes.fromhex(self.tac_denial)),
                ("DF13", bytes.fromhex(self.tac_online)),
                ("9F1B", self.floor_limit_minor.to_bytes(4, "big")),
                ("DF15", self.threshold_minor.to_bytes(4, "big")),
                ("DF16", bytes([self.max_target_pct])),
                ("DF17", bytes([self.target_pct])),
                ("DF18", b"\x01" if self.online_pin else b"\x00"),
                ("9F7B", bytes.fromhex(f"{self.ec_limit_minor:012d}")),
            ]
        )


class IcInputError(ValueError):
    """Operator input that does not validate: ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def validation_field(exc: ValidationError) -> tuple[str, str]:
    """(field, reason) of a pydantic error, for an error message naming the field."""
    first = exc.errors()[0]
    loc = first["loc"]
    return (str(loc[0]) if loc else "entry", str(first["msg"]))


def _build(model: type[BaseModel], raw: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        field, reason = validation_field(exc)
        raise IcInputError(f"{where}{field}", reason) from None


def load_entries(path: Path, kind: str) -> list[Capk] | list[Aid]:
    """The entries of an import file: a JSON array of objects whose keys are the
    model's fields.  Every entry is validated before anything is returned."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IcInputError("FILE", f"cannot read a JSON array: {exc}") from None
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise IcInputError("FILE", "must be a JSON array of objects")
    model: type[BaseModel] = Capk if kind == CAPK_KIND else Aid
    return [_build(model, item, f"FILE entry {n + 1}: ") for n, item in enumerate(raw)]
