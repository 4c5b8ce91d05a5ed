"""Daemon memory per held authorization.

    python bench/memory.py [--counts 0,10000,100000] [--plain]

Runs a three-server pool (real `lm-daemon`s) whose license has all its seats on server
A and a long client lease (no heartbeats needed during the run), grants authorizations
to distinct client ids on A over a few pipelined connections, and reads A's resident
set size (VmRSS in /proc) after each step. Prints RSS per step and bytes per held
authorization (the slope between steps). Target: <= 1 KiB per authorization.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from _livepool import LivePool, all_up, exit_on_sigterm, make_pool, table

from lm_core.engine import messages as m
from lm_core.engine.rlf import Timing
from lm_core.runtime.connection import Connection
from lm_core.runtime.tlsconfig import client_context, load_tls_dir

APP = "Application 1.0"
CONNS = 16
WINDOW = 64  # requests in flight per connection


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")


async def grant(pool: LivePool, start: int, count: int) -> float:
    """Grant `count` authorizations to clients c<start>..; returns seconds taken."""
    tls = load_tls_dir(pool.tls_dir, "client") if pool.tls_dir else None
    ctx = client_context(tls) if tls else None
    address = pool.rlf.server("A").address
    ids = iter(range(start, start + count))
    t0 = time.perf_counter()

    async def worker() -> None:
        conn = await Connection.open(address, ssl=ctx)
        try:
            inflight = 0
            done = False
            while not done or inflight:
                while not done and inflight < WINDOW:
                    i = next(ids, None)
                    if i is None:
                        done = True
                        break
                    await conn.send(
                        m.Request(pool=pool.rlf.pool, sender=f"c{i}", request_id=i, license=APP)
                    )
                    inflight += 1
                if inflight:
                    reply = await conn.recv(idle_timeout=30)
                    if not isinstance(reply, m.Authorize):
                        raise SystemExit(f"not granted: {reply}")
                    inflight -= 1
        finally:
            await conn.aclose()

    await asyncio.gather(*(worker() for _ in range(CONNS)))
    return time.perf_counter() - t0


async def run(pool: LivePool, counts: list[int]) -> list[list[str]]:
    await pool.wait_status(all_up, "all servers up", 60)
    # let start-up settle (restart grace is one client lease from *first* start: none here)
    await pool.wait_status(lambda st: st["majority"]["ok"], "a majority", 60)
    pid = pool.procs["A"].pid
    rows: list[list[str]] = []
    held = 0
    base = rss_kib(pid)
    prev_kib, prev_held = base, 0
    for target in counts:
        secs = 0.0
        if target > held:
            secs = await grant(pool, held, target - held)
            held = target
        kib = rss_kib(pid)
        slope = (kib - prev_kib) * 1024 / (held - prev_held) if held > prev_held else None
        total = (kib - base) * 1024 / held if held else None
        rows.append(
            [
                f"{held:,}",
                f"{kib / 1024:.1f}",
                f"{slope:.0f}" if slope is not None else "-",
                f"{total:.0f}" if total is not None else "-",
                f"{(target and held / secs) or 0:,.0f}" if secs else "-",
            ]
        )
        prev_kib, prev_held = kib, held
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", default="0,10000,100000")
    ap.add_argument("--plain", action="store_true", help="plaintext loopback instead of TLS")
    args = ap.parse_args()
    counts = [int(x) for x in args.counts.split(",")]
    seats = max(counts) + 10
    timing = Timing(
        heartbeat_interval=0.5,
        leader_timeout=2.0,
        server_lease=1.5,
        client_heartbeat=1800.0,
        client_lease=3600.0,
    )
    exit_on_sigterm()
    pool = make_pool(n=3, seats=seats, dist={"A": seats}, timing=timing, tls=not args.plain)
    try:
        pool.start_all()
        rows = asyncio.run(run(pool, counts))
    finally:
        pool.close()
    print(
        table(
            "lm-daemon RSS (server A) by held authorizations",
            ["held", "RSS MiB", "bytes/auth (step)", "bytes/auth (from 0)", "grants/s"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
