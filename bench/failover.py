"""Fail-over time on real processes: `kill -9` the server holding a client's seat (the
leader, so one run measures both) and time (a) until that client holds a new seat from
another server, and (b) until the pool has a new leader with a majority. The RLF's
default timings; median and max over >= 10 runs (target: new seat <= 2 x client
heartbeat interval + 1 s).

Baseline printed beside it, measured in the same run: the time for the same client to
get its first seat from a healthy pool (connect + TLS handshake + grant).

Each run: all three servers up and a leader elected; a `LicenseClient` (the real client
library, TLS) holds a seat from the leader; the leader is killed; the client's own
events say when it holds a new seat; the admin status (polled every 20 ms) says when a
new leader has a majority; the killed server is restarted and must come back as a
follower before the next run.

    .venv/bin/python bench/failover.py [--runs 10] [--plaintext]
    .venv/bin/python bench/failover.py --heal [--cuts 15,30,45]   (partitions: see _netns.py)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _netns
from _livepool import APP, LivePool, exit_on_sigterm, leader_of, make_pool

from lm_core.runtime.client import LicenseClient


def all_up_with_leader(status: dict[str, Any]) -> bool:
    leader = leader_of(status)
    if leader is None:
        return False
    roles = {s["id"]: s.get("role") for s in status["servers"]}
    return all(s.get("up") for s in status["servers"]) and all(
        roles[sid] == ("leader" if sid == leader else "follower") for sid in roles
    )


async def one_run(pool: LivePool, run: int) -> tuple[float, float, float, str]:
    status = await pool.wait_status(all_up_with_leader, "all servers up with a leader", 60)
    victim = status["leader"]
    client = LicenseClient(
        pool.rlf, pool.trust("client"), client_id=f"failover-{run}", prefer=victim
    )
    moved = asyncio.Event()
    moved_at: list[float] = []
    victim_gone = False

    def on_event(event: dict[str, Any]) -> None:
        if victim_gone and event["event"] == "authorized" and event["server"] != victim:
            moved_at.append(time.monotonic())
            moved.set()

    # The servers refuse new grants for one client lease after their start (S4); wait
    # until the victim grants.
    deadline = time.monotonic() + 60
    while True:
        t_ask = time.monotonic()
        lease = client.acquire(APP, wait=True, on_event=on_event)
        async with asyncio.timeout(60):
            await lease.start()
        first_seat = time.monotonic() - t_ask
        if lease.server == victim:
            break
        await lease.stop()
        if time.monotonic() > deadline:
            raise SystemExit(f"{victim} never granted")
        client = LicenseClient(
            pool.rlf,
            pool.trust("client"),
            client_id=f"failover-{run}-{t_ask}",
            prefer=victim,
        )
        await asyncio.sleep(0.5)
    try:
        victim_gone = True
        t0 = time.monotonic()
        pool.kill(victim)
        new = await pool.wait_status(
            lambda s: leader_of(s) not in (None, victim), "a new leader", 60
        )
        t_leader = time.monotonic() - t0
        async with asyncio.timeout(60):
            await moved.wait()
        t_seat = moved_at[0] - t0
    finally:
        await lease.stop()
    pool.start(victim)
    return t_seat, t_leader, first_seat, f"{victim}->{new['leader']}/{lease.server}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--plaintext", action="store_true", help="--insecure-loopback daemons")
    ap.add_argument("--heal", action="store_true", help="only the heal rows (bench/_netns.py)")
    _netns.add_arguments(ap)
    args = ap.parse_args()
    exit_on_sigterm()
    if args.heal:
        _netns.heal_section(args, runs=1 if args.runs == 10 else args.runs)
        return
    pool = make_pool(n=3, seats=100, tls=not args.plaintext)
    timing = pool.rlf.timing
    results: list[tuple[float, float, float, str]] = []
    try:
        for sid in pool.rlf.server_ids:
            pool.start(sid)

        async def runs() -> None:
            for i in range(args.runs):
                r = await one_run(pool, i)
                results.append(r)
                print(
                    f"run {i + 1:>2}: {r[3]:<10} new seat {r[0]:6.2f} s   new leader {r[1]:6.2f} s",
                    flush=True,
                )

        asyncio.run(runs())
    finally:
        pool.close()

    seats = [r[0] for r in results]
    leaders = [r[1] for r in results]
    firsts = [r[2] for r in results]
    target = 2 * timing.client_heartbeat + 1.0
    print(
        f"\nfail-over after kill -9 of the leader holding the seat, {len(results)} runs, "
        f"{'plaintext' if args.plaintext else 'TLS 1.3'}; timings: client heartbeat "
        f"{timing.client_heartbeat:g} s, client lease {timing.client_lease:g} s, "
        f"leader timeout {timing.leader_timeout:g} s"
    )
    print(f"{'':28} {'median':>8} {'max':>8}")
    print(f"{'kill -9 -> new seat':28} {statistics.median(seats):8.2f} {max(seats):8.2f}   "
          f"(target <= {target:g} s)")  # fmt: skip
    print(f"{'kill -9 -> new leader':28} {statistics.median(leaders):8.2f} {max(leaders):8.2f}")
    print(f"{'baseline: first seat':28} {statistics.median(firsts):8.2f} {max(firsts):8.2f}")
    print(
        f"ratio new seat / client heartbeat interval: "
        f"median {statistics.median(seats) / timing.client_heartbeat:.2f}, "
        f"max {max(seats) / timing.client_heartbeat:.2f}"
    )


if __name__ == "__main__":
    main()
