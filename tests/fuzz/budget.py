"""The fuzz budget: short in the normal suite, long on demand.

``LM_FUZZ_EXAMPLES=N`` sets every target's hypothesis ``max_examples`` to N (default a
few hundred: the whole tests/fuzz suite runs in well under 20 s on CI). See README.md."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("LM_FUZZ_EXAMPLES", "0") or 0)
SAMPLES = Path(__file__).resolve().parents[2] / "sample_rlfs"
GOOD_RLFS = sorted(SAMPLES.glob("*.rlf"))
BAD_RLFS = sorted((SAMPLES / "bad").glob("*.rlf"))


def fuzz(default: int) -> settings:
    """Hypothesis settings for one target: `default` examples unless LM_FUZZ_EXAMPLES."""
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        derandomize=not EXAMPLES,  # CI runs are reproducible; long runs explore
        suppress_health_check=list(HealthCheck),
        database=None,
    )
