"""posp/crypto."""
