"""The TEST zone keys are what the HSM engine derives from their clear values."""

from __future__ import annotations

import pytest

from hsm_sim.engine import HsmEngine
from posp.hsm.api import KEY_PVK, KEY_ZAK, KEY_ZMK, KEY_ZPK
from posp.lab import zone_keys as T
from posp.lab.inprocess_hsm import inprocess_hsm_client

CASES = [
    (T.TEST_ZMK_CLEAR, KEY_ZMK, T.TEST_ZMK_LMK, None, T.TEST_ZMK_KCV),
    (T.TEST_ZPK_CLEAR, KEY_ZPK, T.TEST_ZPK_LMK, T.TEST_ZPK_ZMK, T.TEST_ZPK_KCV),
    (T.TEST_ZAK_CLEAR, KEY_ZAK, T.TEST_ZAK_LMK, T.TEST_ZAK_ZMK, T.TEST_ZAK_KCV),
    (T.TEST_PVK_CLEAR, KEY_PVK, T.TEST_PVK_LMK, None, T.TEST_PVK_KCV),
]


@pytest.mark.parametrize(("clear", "key_type", "under_lmk", "under_zmk", "kcv"), CASES)
async def test_test_key_matches_hsm_derivation(
    clear: str, key_type: str, under_lmk: str, under_zmk: str | None, kcv: str
) -> None:
    """A0 with the clear value as its 'random' key reproduces the hardcoded forms."""
    engine = HsmEngine(key_source=lambda _n: bytes.fromhex(clear))
    hsm = inprocess_hsm_client(engine)
    generated = await hsm.generate_key(
        key_type, "U", export_under=T.TEST_ZMK_LMK if under_zmk else None
    )
    assert (generated.under_lmk, generated.kcv, generated.under_wrap) == (
        under_lmk,
        kcv,
        under_zmk,
    )


async def test_zone_keys_import_from_zmk_form() -> None:
    """FA / FK import the under-ZMK forms back to the hardcoded under-LMK forms."""
    hsm = inprocess_hsm_client()
    zpk = await hsm.import_zpk(T.TEST_ZMK_LMK, T.TEST_ZPK_ZMK)
    zak = await hsm.import_zak(T.TEST_ZMK_LMK, T.TEST_ZAK_ZMK)
    assert (zpk.under_lmk, zpk.kcv) == (T.TEST_ZPK_LMK, T.TEST_ZPK_KCV)
    assert (zak.under_lmk, zak.kcv) == (T.TEST_ZAK_LMK, T.TEST_ZAK_KCV)
