"""How long `lm rlf push` takes to reach every server of an 11-server pool on loopback.

    python bench/push.py [--servers 11] [--runs 10] [--plain]

Starts N real `lm-daemon`s (TLS by default) with the RLF's default timings, waits for a
leader, then measures in the same run:

* baseline: one pool status (a StatusRequest round trip to each of the N servers, at once);
* push: `AdminClient.push_rlf` (what `lm rlf push` runs): local verify + pool status +
  UPDATE_RLF to the leader + waiting until every server reports the new sequence;
* the `lm rlf push` command end to end, beside `lm --help` (the CLI's own start-up).

Prints a table; target: push <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

from _livepool import LivePool, all_up, exit_on_sigterm, make_pool, table

from lm_core.engine.rlf import Timing


def _ms(xs: list[float]) -> tuple[str, str]:
    return f"{statistics.median(xs) * 1000:.1f}", f"{max(xs) * 1000:.1f}"


async def measure(pool: LivePool, runs: int) -> list[list[str]]:
    await pool.wait_status(all_up, "all servers up", 60)
    rows = []
    async with pool.admin(timeout=2.0) as c:
        base = []
        for _ in range(max(20, runs)):
            t0 = time.perf_counter()
            st = await c.status()
            base.append(time.perf_counter() - t0)
            assert all(s["reachable"] for s in st["servers"])
        pushes = []
        for _ in range(runs):
            new, text = pool.next_rlf()
            t0 = time.perf_counter()
            res = await c.push_rlf(text)
            pushes.append(time.perf_counter() - t0)
            if not res.ok:
                raise SystemExit(f"push failed: {res.message} {res.per_server}")
            pool.rlf = new
    n = len(pool.rlf.servers)
    bmed, bmax = _ms(base)
    pmed, pmax = _ms(pushes)
    rows.append([f"pool status ({n} round trips)", str(len(base)), bmed, bmax, "1.0"])
    ratio = statistics.median(pushes) / statistics.median(base)
    rows.append([f"push_rlf to all {n}", str(runs), pmed, pmax, f"{ratio:.1f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=11)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--plain", action="store_true", help="plaintext loopback instead of TLS")
    args = ap.parse_args()
    exit_on_sigterm()
    pool = make_pool(n=args.servers, seats=10 * args.servers, timing=Timing(), tls=not args.plain)
    try:
        pool.start_all()
        rows = asyncio.run(measure(pool, args.runs))
        env = dict(os.environ)
        if pool.tls_dir:
            env["LM_TLS_DIR"] = str(pool.tls_dir)
        lm = [sys.executable, "-c", "from lm_cli.main import main; main()"]
        starts, clis = [], []
        for i in range(3):
            t0 = time.perf_counter()
            subprocess.run([*lm, "--help"], capture_output=True, env=env, check=True)
            starts.append(time.perf_counter() - t0)
            new, text = pool.next_rlf()
            path = pool.root / f"next{i}.rlf"
            path.write_text(text)
            t0 = time.perf_counter()
            out = subprocess.run(
                [*lm, "rlf", "push", str(path), "--pool-from", str(pool.rlf_path)],
                capture_output=True,
                text=True,
                env=env,
            )
            clis.append(time.perf_counter() - t0)
            if out.returncode != 0:
                raise SystemExit(f"lm rlf push failed: {out.stderr.strip()}")
            pool.rlf = new
        rows.append(["`lm --help` (process start-up)", "3", *_ms(starts), "-"])
        rows.append(["`lm rlf push` command", "3", *_ms(clis), "-"])
    finally:
        pool.close()
    mode = "plaintext" if args.plain else "TLS 1.3"
    print(
        table(
            f"RLF push, {args.servers} servers on loopback ({mode}), default timings",
            ["what", "runs", "median ms", "max ms", "x status"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
