"""posp/store."""
