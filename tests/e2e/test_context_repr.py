"""The transaction context's repr (what a traceback or a debugger prints) holds no
card data: no PAN, no track data, no PIN block, no raw frame (review finding 3)."""

from __future__ import annotations

from typing import Any

import pytest

from posp.pipeline import engine
from posp.pipeline.context import TxnContext
from posp.pipeline.journal import record_outcome
from terminals.cards import TerminalCard
from tests.e2e.conftest import Stack
from tests.e2e.tamper import tampered


async def test_repr_of_a_track_encrypted_pin_purchase_context_shows_no_card_data(
    stack: Stack, card: TerminalCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[TxnContext] = []

    async def capture(ctx: TxnContext, code: str) -> Any:
        seen.append(ctx)
        return await record_outcome(ctx, code)

    monkeypatch.setattr(engine, "record_outcome", capture)
    terminal = await stack.terminal(variant="004", track_encryption=True)
    machine = terminal.machine
    frame = tampered(machine, machine.purchase(card, 700, pin=card.pin), {}, drop=(2, 14))
    outcome = await terminal.exchange(frame)
    assert outcome.approved
    ctx = next(c for c in seen if c.route.name == "purchase")
    pin_block = ctx.pin_block_zpk
    track2 = ctx.track2
    assert isinstance(pin_block, str) and isinstance(track2, str)  # the data was there
    text = repr(ctx)
    for secret in (card.pan, track2, track2.replace("=", "D"), pin_block, repr(ctx.body)):
        assert secret not in text
    assert ctx.body.hex() not in text
