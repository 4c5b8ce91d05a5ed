"""200 randomized seeds (the 2,000-seed sweeps `lm sim --seeds 2000 --start N` are run by
hand, see docs/ENGINE.md): every promise checked after every step (S1, S2, one leader per
term, no engine bug) and after healing (L1, S2, S6); at every single fault on a settled,
loaded pool L2 is checked: every client of the faulted server holds a seat again within
its bound (2 x client heartbeat + 1 s, with the clocks' drift margin), and clients
of servers that stay up never move or lapse.
Each seed: >= 20 simulated minutes. Two thirds are mixed pools: 3-11 servers, 10-200
clients, crashes (some mid-step), pauses, partitions (one server cut off,
majority/minority, asymmetric, majorities ring), client cuts, loss, duplication, delay,
replay of old messages, and admin operations at random servers (valid and invalid). A
third are loaded pools: 50-100 % of the seats held by steady clients, timing at or near
the RLF defaults, mostly single crashes, pauses and cuts. A failure names the seed; `lm
sim --seed N` replays it with a readable trace.
"""

from __future__ import annotations

from lm_cli.sim_cmd import run_many

SEEDS = 200
MINUTES = 20


def test_random_seeds_keep_every_promise() -> None:
    results = run_many(list(range(SEEDS)), duration=MINUTES * 60.0, workers=2, l2="check")
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
    # L2 was judged: loaded seeds ran, faults on them were judged, clients re-seated.
    loaded = [r for r in results if r["loaded"]]
    assert len(loaded) > SEEDS // 5
    assert all(not r["l2"] for r in loaded)
    assert sum(r["l2_windows"] for r in loaded) > SEEDS
    assert sum(len(r["l2_reseat"]) for r in loaded) > SEEDS
    assert sum(r["l2_live"] for r in loaded) > SEEDS
    # L2 (checked per seed above): healthy servers' clients stay put, elections included
    # (renew window), and never lapse.
    moved = [(r["seed"], r["l2_moved"]) for r in loaded if r["l2_moved"]]
    lapsed = [(r["seed"], r["l2_lapsed"]) for r in loaded if r["l2_lapsed"]]
    assert not moved, f"clients of live servers moved (seed, count): {moved}"
    assert not lapsed, f"clients of live servers lapsed (seed, count): {lapsed}"
