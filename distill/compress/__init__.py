"""Compression candidates beside distillation: pruning, low rank, int8 (see ``distill compare``)."""
