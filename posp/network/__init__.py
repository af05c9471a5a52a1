"""posp/network."""
