"""posp/hsm."""
