"""Distillation losses: they see tensors only, never a model or a dataset."""
