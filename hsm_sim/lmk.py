"""The variant LMK set: 20 double-length DES pairs, 00-01 … 38-39.

Invariants: an ``LmkSet`` always holds exactly 20 odd-parity 16-byte pairs;
its repr never shows key material; loading errors name the line, never the
key values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posp.crypto.des import check_value, has_odd_parity
from posp.errors import ConfigError

PAIR_COUNT = 20
PAIR_BYTES = 16

# The public Thales test LMK set (hsm-reference.md §3), left ‖ right per pair.
_TEST_SET_HEX = (
    "01010101010101017902CD1FD36EF8BA",
    "20202020202020203131313131313131",
    "40404040404040405151515151515151",
    "61616161616161617070707070707070",
    "80808080808080809191919191919191",
    "A1A1A1A1A1A1A1A1B0B0B0B0B0B0B0B0",
    "C1C1010101010101D0D0010101010101",
    "E0E0010101010101F1F1010101010101",
    "1C587F1C13924FEF0101010101010101",
    "01010101010101010101010101010101",
    "02020202020202020404040404040404",
    "07070707070707071010101010101010",
    "13131313131313131515151515151515",
    "16161616161616161919191919191919",
    "1A1A1A1A1A1A1A1A1C1C1C1C1C1C1C1C",
    "23232323232323232525252525252525",
    "26262626262626262929292929292929",
    "2A2A2A2A2A2A2A2A2C2C2C2C2C2C2C2C",
    "2F2F2F2F2F2F2F2F3131313131313131",
    "01010101010101010101010101010101",
)


def pair_label(index: int) -> str:
    """``00-01`` for pair 0, ``38-39`` for pair 19."""
    return f"{2 * index:02d}-{2 * index + 1:02d}"


@dataclass(frozen=True)
class LmkSet:
    """Twenty LMK pairs; ``pairs[i]`` is LMK ``2i`` ‖ LMK ``2i+1`` (16 bytes)."""

    pairs: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.pairs) != PAIR_COUNT:
            raise ConfigError(f"an LMK set has {PAIR_COUNT} pairs, not {len(self.pairs)}")
        for i, pair in enumerate(self.pairs):
            if len(pair) != PAIR_BYTES:
                raise ConfigError(f"LMK pair {pair_label(i)} is not 16 bytes")
            if not has_odd_parity(pair):
                raise ConfigError(f"LMK pair {pair_label(i)} fails the odd parity check")

    def __repr__(self) -> str:
        return f"LmkSet(check={self.check_value()})"

    @classmethod
    def test_set(cls) -> LmkSet:
        """The public Thales test LMK set; never for production."""
        return cls(tuple(bytes.fromhex(h) for h in _TEST_SET_HEX))

    @classmethod
    def load(cls, path: str | Path) -> LmkSet:
        """Read a deployment LMK file: 20 lines ``NN-NN <16H> <16H>`` (see README)."""
        try:
            text = Path(path).read_text(encoding="ascii")
        except FileNotFoundError:
            raise ConfigError(f"LMK file {path} does not exist (--lmk-file)") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"cannot read LMK file {path}: {reason} (--lmk-file)") from exc
        pairs: list[bytes] = []
        for line_no, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                pairs.append(_parse_line(line, line_no, len(pairs)))
            except ConfigError as exc:  # name the file: the operator may pass several
                raise ConfigError(f"{path}: {exc}") from None
        if len(pairs) != PAIR_COUNT:
            raise ConfigError(f"LMK file {path} has {len(pairs)} pairs, expected {PAIR_COUNT}")
        return cls(tuple(pairs))

    def check_value(self) -> str:
        """The simulator's NC LMK check value: 16H KCV of the XOR of all pairs."""
        folded = 0
        for pair in self.pairs:
            folded ^= int.from_bytes(pair, "big")
        return check_value(folded.to_bytes(PAIR_BYTES, "big"), 8).hex().upper()


def _parse_line(line: str, line_no: int, index: int) -> bytes:
    parts = line.split()
    if len(parts) != 3:
        raise ConfigError(f"LMK file line {line_no}: expected 'NN-NN <16H> <16H>'")
    label, left, right = parts
    if label != pair_label(index):
        raise ConfigError(f"LMK file line {line_no}: expected pair {pair_label(index)}")
    try:
        pair = bytes.fromhex(left) + bytes.fromhex(right)
    except ValueError:
        raise ConfigError(f"LMK file line {line_no}: keys must be hex") from None
    if len(left) != 16 or len(right) != 16:
        raise ConfigError(f"LMK file line {line_no}: each LMK must be 16 hex digits")
    if not has_odd_parity(pair):
        raise ConfigError(f"LMK file line {line_no}: odd parity check failed")
    return pair
