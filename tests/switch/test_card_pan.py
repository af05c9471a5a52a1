"""One parser for the PAN in clear track 2 (``context.pan_from_track2``), used by
the journal's ``card_pan`` and by the track decryption step."""

from __future__ import annotations

from posp.iso8583 import Message
from posp.pipeline.context import card_pan, pan_from_track2


def test_the_pan_is_the_digits_before_either_separator() -> None:
    assert pan_from_track2("6225880000000000010=30121010000") == "6225880000000000010"
    assert pan_from_track2("6225880000000000010D30121010000") == "6225880000000000010"
    assert pan_from_track2("=3012") is None
    assert pan_from_track2("62258800?0=3012") is None


def test_card_pan_reads_clear_track_2_but_not_encrypted_track_2() -> None:
    track = "6225880000000000010D30121010000"
    assert card_pan(Message("0200", {35: track})) == "6225880000000000010"
    encrypted = Message("0200", {35: track, 53: "2610000000000000"})
    assert card_pan(encrypted) is None
    assert card_pan(Message("0200", {2: "6225880000000000028", 35: track})) == "6225880000000000028"
