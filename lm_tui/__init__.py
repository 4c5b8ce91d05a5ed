"""The `lm-tui` operator console."""
