"""Deterministic simulator of a license-server pool (see `world` for the theory).

    import random
    from lm_core.engine.sim import run_seed
    result = run_seed(42, random.Random(42))     # raises SimFailure with a trace on a bug

Modules: `rng` (the generator Protocol), `pool` (signed test pools), `network`,
`faults`, `invariants`, `trace`, `world`, `scenario` (scripted walk-throughs),
`runner` (randomized seeds).
"""

from __future__ import annotations

from lm_core.engine.sim.invariants import SimFailure, Violation
from lm_core.engine.sim.runner import SeedResult, SimConfig, random_config, run_config, run_seed
from lm_core.engine.sim.scenario import Scenario, ScenarioError, run_script

__all__ = [
    "Scenario",
    "ScenarioError",
    "SeedResult",
    "SimConfig",
    "SimFailure",
    "Violation",
    "random_config",
    "run_config",
    "run_script",
    "run_seed",
]
