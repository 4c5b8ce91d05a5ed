"""Pure, deterministic engine: no IO, no clock, no randomness of its own."""
