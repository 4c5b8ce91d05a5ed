"""lm: a floating-license server pool."""
