"""Model registry and architectures (they know nothing of distillation)."""
