"""posp/pipeline."""
