"""posp/iso8583."""
