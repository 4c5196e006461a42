"""Benchmarks of SPEC section 9: one module per bar, a data generator, and a runner (`python -m bench`)."""
