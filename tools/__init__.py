"""Build and maintenance helpers that are not part of any installed package."""
