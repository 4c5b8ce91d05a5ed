"""The `lm` command line."""
