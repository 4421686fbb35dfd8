"""Datasets as in-memory uint8 splits (knows nothing of models)."""
