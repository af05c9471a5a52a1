"""Settings of the switch's card network link (a fragment the switch settings embed).

Defaults work out of the box against ``issuer-sim serve`` on the same host with the
TEST zone keys of :mod:`posp.lab.zone_keys` (labs only: the switch warns at start
while any of them is configured).  Every key here is under the LMK (never clear).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from posp.lab import zone_keys


class NetworkLinkSettings(BaseModel):
    """``[network]`` section of the switch configuration (env ``POSP_NETWORK__…``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=9583, ge=0, le=65535)
    connections: int = Field(default=2, ge=1, le=64)
    timeout_s: float = Field(default=5.0, gt=0, description="deadline per request")
    connect_timeout_s: float = Field(default=3.0, gt=0)
    echo_idle_s: float = Field(default=30.0, gt=0, description="echo after this idle time")
    reconnect_min_s: float = Field(default=0.2, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    acquirer_id: str = Field(default="48010000", pattern=r"^\d{1,11}$")  # F32
    forwarding_id: str = Field(default="48010000", pattern=r"^\d{1,11}$")  # F33
    receiving_id: str = Field(default="00010000", pattern=r"^\d{1,11}$")  # F100 (network)
    destination_id: str = Field(default="00010000", max_length=11)  # header destination
    source_id: str = Field(default="48010000", max_length=11)  # header source
    zmk_lmk: str = zone_keys.TEST_ZMK_LMK
    zpk_lmk: str = zone_keys.TEST_ZPK_LMK
    zak_lmk: str = zone_keys.TEST_ZAK_LMK
    key_grace_s: float = Field(default=60.0, ge=0, description="old zone keys stay valid")
    tz_offset_hours: float = Field(default=8.0, ge=-14, le=14, description="node clock (F7)")
    max_frame_bytes: int = Field(default=8192, ge=256)

    @property
    def uses_test_zone_keys(self) -> bool:
        """True while any zone key is one of the published TEST keys (labs only)."""
        return bool({self.zmk_lmk, self.zpk_lmk, self.zak_lmk} & zone_keys.TEST_KEYS_UNDER_LMK)
