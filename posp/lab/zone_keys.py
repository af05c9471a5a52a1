"""TEST-ONLY zone keys: the lab defaults of the switch and the issuer simulator.

NEVER use these in production: the clear values are published here so that tests
and demos can make PIN blocks and check MACs.  A deployment sets its own ZMK (under
its own LMK) through configuration and receives ZPK/ZAK by key exchange.

All "under LMK" values are under the public Thales *test* LMK set
(``hsm_sim.lmk.LmkSet.test_set()``), variant scheme ``U``; "under ZMK" values are
scheme ``X`` (each half 3DES-ECB under the clear ZMK, no variant), as carried in
network F48.  ``tests/network/test_zone_keys.py`` re-derives every value through the
HSM engine, so a change to one of them cannot go unnoticed.
"""

from __future__ import annotations

from typing import Final

# Zone master key (type 000, LMK pair 04-05).
TEST_ZMK_CLEAR: Final = "0123456789ABCDEFFEDCBA9876543210"
TEST_ZMK_LMK: Final = "U42BBE7D9A0A55D0EBDE055DE2791ACCD"
TEST_ZMK_KCV: Final = "08D7B4"

# Initial zone PIN key (type 001, LMK pair 06-07).
TEST_ZPK_CLEAR: Final = "0BCD08340BF4020B46688A151AE5A86E"
TEST_ZPK_LMK: Final = "UFC1D8C48A7E3A302AD7F3977A58028D8"
TEST_ZPK_ZMK: Final = "X59B49F694F9151E2A4935A69EB628F6F"
TEST_ZPK_KCV: Final = "6253F9"

# Initial zone MAC key (type 008, LMK pair 26-27).
TEST_ZAK_CLEAR: Final = "FD1FC1FB26160B5B0179E07CA4D52007"
TEST_ZAK_LMK: Final = "UB528620D5BFF26BC4308FCBDA48AFC61"
TEST_ZAK_ZMK: Final = "XC07FD8C0D9A2A4002B7C1703401C37F7"
TEST_ZAK_KCV: Final = "7B2324"

# Issuer PIN verification key pair (type 002, LMK pair 14-15) for the simulator's PVVs.
TEST_PVK_CLEAR: Final = "8386EABAA16483EF0EBA31A297FDD69E"
TEST_PVK_LMK: Final = "UB16E47361D05B34B6CE22D4185A1B674"
TEST_PVK_KCV: Final = "7AD1FC"

#: Every TEST key under the LMK: the switch warns when its settings use one.
TEST_KEYS_UNDER_LMK: Final = frozenset({TEST_ZMK_LMK, TEST_ZPK_LMK, TEST_ZAK_LMK, TEST_PVK_LMK})
