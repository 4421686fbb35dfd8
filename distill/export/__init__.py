"""Export of trained students (ONNX)."""
