"""issuer_sim."""
