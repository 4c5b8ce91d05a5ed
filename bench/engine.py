"""Benchmark: the engine inside the simulator, 3 / 5 / 11 servers x 10,000 clients.

    .venv/bin/python bench/engine.py [--clients 10000] [--minutes 10] [--servers 3,5,11]

For each pool size: a quiet pool (no faults) where every client requests a seat in the
first 30 simulated seconds and then heartbeats; prints engine steps per second
(server handle/tick + client state-machine calls) and simulated seconds per wall
second. The baseline, measured in the same run, pushes the same number of messages
through the same network model and event queue with no engines at all; the ratio says
what the engines (and the checks) cost on top of bare delivery.
Target: 10,000 clients x 11 servers x 10 simulated minutes in under 60 s.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import random
import time

from lm_core.engine.rlf import Timing
from lm_core.engine.sim.network import Network
from lm_core.engine.sim.pool import TODAY, make_pool
from lm_core.engine.sim.world import World

# Timing sized for 10,000 clients: servers heartbeat twice a second, clients every 30 s.
TIMING = Timing(
    heartbeat_interval=0.5,
    leader_timeout=2.0,
    server_lease=1.5,
    client_heartbeat=30.0,
    client_lease=90.0,
    drift=0.01,
)


def run_pool(n_servers: int, n_clients: int, minutes: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    kit = make_pool(n_servers, (("Application", "1.0", n_clients),), timing=TIMING)
    world = World(kit.signed, rng, today=TODAY)
    ids = list(world.nodes)
    for sid in ids:
        world.call_at(0.01 * ids.index(sid), functools.partial(world.start_server, sid))
    for k in range(n_clients):
        cl = world.add_client(f"c{k}", "Application 1.0", home=ids[k % n_servers])
        world.want(cl.id, 5.0 + rng.random() * 25.0)
    t0 = time.perf_counter()
    world.run(minutes * 60.0)
    wall = time.perf_counter() - t0
    wanting, holding = world.demand()
    s = world.stats
    return {
        "wall": wall,
        "steps": s.server_steps + s.client_steps,
        "server_steps": s.server_steps,
        "messages": world.net.sent,
        "holding": holding["Application 1.0"],
        "wanting": wanting["Application 1.0"],
        "sim": world.now,
    }


def baseline(messages: int, seed: int) -> float:
    """The same number of messages through the network model and a heap, no engines."""
    rng = random.Random(seed)
    net = Network(rng)
    q: list[tuple[float, int, str, str, None]] = []
    now = 0.0
    t0 = time.perf_counter()
    for i in range(messages):
        for d in net.delays("c", "A", client=True):
            heapq.heappush(q, (now + d, i, "c", "A", None))
        if len(q) > 64:
            now = heapq.heappop(q)[0]
    while q:
        heapq.heappop(q)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--servers", default="3,5,11")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(x) for x in args.servers.split(",")]
    print(
        f"engine benchmark: {args.clients:,} clients, {args.minutes:g} simulated minutes, "
        f"server hb {TIMING.heartbeat_interval}s, client hb {TIMING.client_heartbeat}s"
    )
    head = (
        f"{'servers':>7} {'wall s':>8} {'steps':>10} {'steps/s':>9} {'sim s/wall s':>12} "
        f"{'messages':>10} {'baseline s':>10} {'ratio':>6} {'held':>7}"
    )
    print(head)
    print("-" * len(head))
    for n in sizes:
        r = run_pool(n, args.clients, args.minutes, args.seed)
        b = baseline(int(r["messages"]), args.seed)
        print(
            f"{n:>7} {r['wall']:>8.1f} {int(r['steps']):>10,} {r['steps'] / r['wall']:>9,.0f} "
            f"{r['sim'] / r['wall']:>12.1f} {int(r['messages']):>10,} {b:>10.2f} "
            f"{r['wall'] / b:>6.1f} {int(r['holding']):>7,}"
        )
    print(
        "ratio = wall time of the simulated pool / wall time of the bare message loop; "
        "held = clients holding a seat at the end"
    )


if __name__ == "__main__":
    main()
