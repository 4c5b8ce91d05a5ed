"""Seeds of the simulator that once broke a promise, replayed end to end (each ~1 s).

The scripted reproductions (test_server_release_order.py, test_server_stale_leader.py)
pin the causes;
these pin the whole run, with every promise checked after every step.
"""

from __future__ import annotations

import random

import pytest

from lm_core.engine.sim.runner import run_seed

SEEDS = {
    20151: "S1: a RELEASE overtaken by the client's next REQUEST freed a held seat",
    50493: "S1: a leader without a majority lease raised an allowance with fenced seats",
}


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seed_keeps_every_promise(seed: int) -> None:
    r = run_seed(seed, random.Random(seed), raise_on_failure=False)
    assert r.ok, f"seed {seed} ({SEEDS[seed]}): {r.invariant}: {r.message}"
    assert r.sim_seconds >= 1200.0
