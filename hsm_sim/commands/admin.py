"""NC (diagnostics) and B2 (echo)."""

from __future__ import annotations

from hsm_sim.context import HsmContext
from hsm_sim.fields import Reader

FIRMWARE = "0007-E000"


def nc_diagnostics(ctx: HsmContext, r: Reader) -> bytes:
    """NC → ND: LMK check value 16H + firmware 9A."""
    r.finish()
    return f"00{ctx.lmk.check_value()}{FIRMWARE}".encode()


def b2_echo(ctx: HsmContext, r: Reader) -> bytes:
    """B2 → B3: length 4N (decimal) + data, echoed."""
    length = int(r.digits(4))
    echoed = r.raw(length)
    r.finish()
    return b"00" + echoed
