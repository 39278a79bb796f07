"""The quantised reference lives in passes/reference.py (adaptive slicing evaluates layers with it too)."""
from passes.reference import REF, dequantize_outputs, run_reference  # noqa: F401
