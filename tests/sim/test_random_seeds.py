"""500 randomized seeds: every promise checked after every step (S1, S2, one leader per
term), and after healing (L1, S2, S6). Each seed: 3-11 servers, 10-200 clients, >= 20
simulated minutes of crashes (some mid-step), pauses, partitions (one server cut off,
majority/minority, asymmetric, majorities ring), client cuts, loss, duplication, delay,
replay of old messages, and admin operations at random servers (valid and invalid).

A failure names the seed; `lm sim --seed N` replays it with a readable trace.
"""

from __future__ import annotations

from lm_cli.sim_cmd import run_many

SEEDS = 500
MINUTES = 20


def test_random_seeds_keep_every_promise() -> None:
    results = run_many(list(range(SEEDS)), duration=MINUTES * 60.0, workers=2)
    assert len(results) == SEEDS
    failed = [r for r in results if not r["ok"]]
    assert not failed, (
        f"{len(failed)} of {SEEDS} seeds broke a promise (replay: lm sim --seed N):\n"
        + "\n".join(f"seed {r['seed']}: {r['invariant']}: {r['message']}" for r in failed)
    )
    # The runs were the runs we asked for: long enough, every size, faults happened.
    assert min(r["sim_seconds"] for r in results) >= MINUTES * 60
    assert {r["servers"] for r in results} == set(range(3, 12))
    assert min(r["clients"] for r in results) >= 10
    assert max(r["clients"] for r in results) <= 200
    assert sum(r["crashes"] for r in results) > SEEDS
    assert sum(r["admin_ok"] for r in results) > SEEDS
