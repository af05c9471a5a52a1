"""hsm_sim."""
