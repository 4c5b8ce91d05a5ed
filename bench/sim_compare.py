"""Did a refactoring of the engine change what the simulator sees? Per-seed digests.

    python bench/sim_compare.py dump --seeds 0-499 --out new.jsonl [--src DIR] [--workers 2]
    python bench/sim_compare.py diff base.jsonl new.jsonl

``dump`` runs `lm_core.engine.sim.runner.run_seed` for each seed (as ``lm sim`` does:
``random.Random(seed)``, default ranges, L2 checked) and writes one JSON line per seed:
every field of the `SeedResult` (config included), a SHA-256 over every step and note of
the whole run (each delivered message in full ``repr``, not the trace's short form), and
a SHA-256 over every effect list each engine returned from ``handle``/``tick``. ``--src``
puts another checkout's ``lm_core`` first on the path (e.g. the base commit, unpacked with
``git archive BASE | tar -x -C DIR``), so the same script measures both sides.

``diff`` compares two dumps seed by seed and prints the differing fields; exit 1 if any.

The run re-executes itself with PYTHONHASHSEED=0, so string-set order cannot differ
between the two sides (the engine is meant not to depend on it either).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def _seed_range(text: str) -> range:
    a, _, b = text.partition("-")
    return range(int(a), int(b or a) + 1)


def _fixed_keys() -> None:
    """The simulator draws its admin, vendor and rogue keys once per process, at random
    (so RLF texts and signatures in messages would differ between runs): here they are
    derived from a fixed text instead, drawn in a fixed order before any seed runs."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from lm_core.engine import keys
    from lm_core.engine.sim import pool, runner

    if _DRAWN:
        return
    _DRAWN.append(0)

    def keypair() -> tuple[str, str]:
        _DRAWN[0] += 1
        raw = hashlib.sha256(f"sim_compare key {_DRAWN[0]}".encode()).digest()
        key = Ed25519PrivateKey.from_private_bytes(raw)
        return keys.private_text(key), keys.public_text(key.public_key())

    pool.generate_keypair = keypair
    runner.generate_keypair = keypair
    pool._keys()
    runner._rogue_key()


_DRAWN: list[int] = []


def _run(seed: int) -> dict[str, Any]:
    import random

    from lm_core.engine.server import LicenseServer
    from lm_core.engine.sim.runner import run_seed
    from lm_core.engine.sim.trace import Trace
    from lm_core.engine.sim.world import TEST_CLAIM_KEY

    _fixed_keys()
    effects = hashlib.sha256()
    steps = hashlib.sha256()

    class Hashing(LicenseServer):
        def handle(self, now: float, sender: str, msg: Any) -> list[Any]:
            out = super().handle(now, sender, msg)
            effects.update(f"{self.id} {now!r} {sender} {out!r}\n".encode())
            return out

        def tick(self, now: float) -> list[Any]:
            out = super().tick(now)
            effects.update(f"{self.id} {now!r} tick {out!r}\n".encode())
            return out

    class HashingTrace(Trace):
        def step(self, t: float, kind: str, src: str, dst: str, msg: Any = None) -> None:
            super().step(t, kind, src, dst, msg)
            steps.update(f"{t!r} {kind} {src} {dst} {msg!r}\n".encode())

        def note(self, t: float, kind: str, text: str) -> None:
            super().note(t, kind, text)
            steps.update(f"{t!r} ** {kind} {text}\n".encode())

    def factory(server_id: str, rlf: Any, now: float, today: Any, persisted: Any) -> Any:
        return Hashing(
            server_id, rlf, now=now, today=today, persisted=persisted, claim_key=TEST_CLAIM_KEY
        )

    t0 = time.perf_counter()
    r = run_seed(
        seed,
        random.Random(seed),
        factory=factory,
        trace=HashingTrace(),
        raise_on_failure=False,
    )
    wall = time.perf_counter() - t0
    record = dataclasses.asdict(r)
    record["config"] = repr(r.config)
    record["steps_sha256"] = steps.hexdigest()
    record["effects_sha256"] = effects.hexdigest()
    return {"record": record, "wall": wall}


def _dump(args: argparse.Namespace) -> int:
    import lm_core

    print(f"lm_core from {os.path.dirname(lm_core.__file__)}", file=sys.stderr)
    seeds = _seed_range(args.seeds)
    t0 = time.perf_counter()
    failed = 0
    with open(args.out, "w") as f, ProcessPoolExecutor(args.workers) as pool:
        for res in pool.map(_run, seeds, chunksize=4):
            rec = res["record"]
            failed += not rec["ok"]
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    wall = time.perf_counter() - t0
    print(f"{len(seeds)} seeds, {failed} failed, {wall:.0f}s wall, {args.workers} workers")
    return 0


def _load(path: str) -> dict[int, dict[str, Any]]:
    with open(path) as f:
        return {rec["seed"]: rec for rec in map(json.loads, f)}


def _diff(args: argparse.Namespace) -> int:
    a, b = _load(args.a), _load(args.b)
    bad = 0
    for seed in sorted(set(a) | set(b)):
        if seed not in a or seed not in b:
            print(f"seed {seed}: only in {'b' if seed not in a else 'a'}")
            bad += 1
            continue
        fields = sorted(k for k in set(a[seed]) | set(b[seed]) if a[seed].get(k) != b[seed].get(k))
        if fields:
            bad += 1
            print(f"seed {seed}: differing fields {', '.join(fields)}")
    both = len(set(a) & set(b))
    fails = sum(not r["ok"] for r in b.values())
    print(f"{both} seeds in both, {bad} differ; {fails} failed seeds in {args.b}")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--seeds", default="0-499")
    d.add_argument("--out", required=True)
    d.add_argument("--src", default="")
    d.add_argument("--workers", type=int, default=2)
    c = sub.add_parser("diff")
    c.add_argument("a")
    c.add_argument("b")
    args = p.parse_args()
    if args.cmd == "diff":
        return _diff(args)
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.src:
        sys.path.insert(0, os.path.abspath(args.src))
    return _dump(args)


if __name__ == "__main__":
    raise SystemExit(main())
