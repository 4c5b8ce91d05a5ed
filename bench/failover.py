"""Fail-over of a pool in use, on real processes (L2): what the users of a faulted server
and of the servers that stayed up see.

Each row is a fresh pool of the patent's shape (three `lm-daemon`s, TLS, Application 1.0,
100 seats, distribution A:40 B:30 C:30, the RLF's default timings), led by A, loaded by
clients of the real client library in this process (`lm_core.runtime.fleet`), each homed
on a server:

    78 % load    A 30, B 24, C 24
    100 % load   A 40, B 30, C 30, plus --waiters clients (default 6, two per server)
                 asking with wait=True: on a full pool they wait, and a pool that
                 over-issues during the fault lets one in (max held > 100)

then one fault: the leader A killed (`kill -9`), the follower B killed, or the leader A
paused (SIGSTOP for --pause seconds, longer than its server lease, then SIGCONT), or the
leader A or the follower B killed and started again with its store --restart-after
seconds later (default 2 s: systemd's RestartSec in contrib/lm-daemon.service). The row
ends when every client of the faulted server holds a seat again and every client was
granted twice more (or after --limit seconds without the first).

Columns, counted from the clients' own events (`on_event`) and `Lease.holds` sampled
every 20 ms: re-seat median / p99 / max -- from the fault to the next grant of each
client of the faulted server ("never" when one did not get one); clients of live servers
that were granted by another server than their own (moved); clients that reported their
lease lost (lapsed); the most seats held at once (max held; limit 100). Target (L2):
re-seat p99 <= 2 x client heartbeat + 1 s, 0 moved, 0 lapsed, max held <= 100.

Baseline, measured in the same run (first row): one client on an empty pool, the leader
holding its seat killed; its re-seat time and the time to a new leader with a majority
(the README's former fail-over figure).

    .venv/bin/python bench/failover.py [--runs 1] [--baseline-runs 5] [--loads 78,100]
        [--faults leader-killed,follower-killed,leader-paused,leader-restarted,
                  follower-restarted] [--restart-after 2] [--waiters 6] [--plaintext]
    .venv/bin/python bench/failover.py --heal [--runs 1] [--cuts 15,30,45]
        (only the heal rows: partitions in network namespaces, see _netns.py)

Adding a row: write an `async def (args) -> Row` and append it to the list `main` builds
(`loaded_rows` shows the pattern; a fault is an `async def (pool) -> Fault` in `FAULTS`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _netns
from _livepool import APP, LivePool, exit_on_sigterm, leader_of, make_pool, markdown

from lm_core.engine.rlf import Timing
from lm_core.runtime.client import LicenseClient
from lm_core.runtime.fleet import Fleet, Outcome, serving
from lm_core.runtime.localpool import FLEET_BUDGETS

SEATS = 100
DIST = {"A": 40, "B": 30, "C": 30}
LOADS = {78: {"A": 30, "B": 24, "C": 24}, 100: {"A": 40, "B": 30, "C": 30}}


# ---------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """Server `victim` stopped answering at `t0` (monotonic) and could answer again from
    `back` (inf: never, it was killed)."""

    victim: str
    t0: float
    back: float = math.inf


async def leader_killed(pool: LivePool) -> Fault:
    st = await pool.wait_status(lambda s: leader_of(s) is not None, "a leader")
    victim = st["leader"]
    t0 = time.monotonic()
    pool.kill(victim)
    return Fault(victim, t0)


async def follower_killed(pool: LivePool) -> Fault:
    st = await pool.wait_status(lambda s: leader_of(s) is not None, "a leader")
    victim = next(sid for sid in pool.ids if sid != st["leader"])
    t0 = time.monotonic()
    pool.kill(victim)
    return Fault(victim, t0)


def leader_paused(pause: float) -> Callable[[LivePool], Awaitable[Fault]]:
    async def fault(pool: LivePool) -> Fault:
        st = await pool.wait_status(lambda s: leader_of(s) is not None, "a leader")
        victim = st["leader"]
        proc = pool.procs[victim]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(pause)
        finally:
            proc.send_signal(signal.SIGCONT)
        back = time.monotonic()
        await pool.wait_status(
            lambda s: any(
                x["id"] == victim and x["reachable"] and x.get("role") == "follower"
                for x in s["servers"]
            ),
            f"{victim} follows again after SIGCONT",
            60,
        )
        return Fault(victim, t0, back)

    return fault


def restarted(leader: bool, after: float) -> Callable[[LivePool], Awaitable[Fault]]:
    """`kill -9` of the leader (or a follower), started again `after` seconds later with
    its store, as systemd's `Restart=on-failure` does (contrib/lm-daemon.service:
    `RestartSec=2`)."""

    async def fault(pool: LivePool) -> Fault:
        st = await pool.wait_status(lambda s: leader_of(s) is not None, "a leader")
        victim = st["leader"] if leader else next(s for s in pool.ids if s != st["leader"])
        t0 = time.monotonic()
        pool.kill(victim)
        await asyncio.sleep(max(0.0, t0 + after - time.monotonic()))
        back = time.monotonic()
        pool.start(victim)
        return Fault(victim, t0, back)

    return fault


FaultFn = Callable[[LivePool], Awaitable[Fault]]


def faults(pause: float, restart_after: float = 2.0) -> dict[str, FaultFn]:
    """The faults by name (the --faults words)."""
    return {
        "leader-killed": leader_killed,
        "follower-killed": follower_killed,
        "leader-paused": leader_paused(pause),
        "leader-restarted": restarted(True, restart_after),
        "follower-restarted": restarted(False, restart_after),
    }


# ---------------------------------------------------------------- rows


@dataclass
class Row:
    """One line of the table; `reseat` holds one entry per client of a faulted server
    (None: never re-seated)."""

    name: str
    reseat: list[float | None] = field(default_factory=list)
    moved: int = 0
    live: int = 0
    lapsed: int = 0
    clients: int = 0
    max_held: int | None = None
    limit: int | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, out: Outcome, limit: int) -> None:
        self.reseat += list(out.reseat.values())
        self.moved += len(out.moved)
        self.live += out.live_clients
        self.lapsed += len(out.lapsed)
        self.clients += out.clients
        self.max_held = max(self.max_held or 0, out.max_held)
        self.limit = limit

    def cells(self) -> list[str]:
        times = sorted(math.inf if d is None else d for d in self.reseat)
        done = sum(1 for d in self.reseat if d is not None)

        def fmt(x: float) -> str:
            return "never" if math.isinf(x) else f"{x:.2f}"

        def pct(q: float) -> float:
            return times[max(0, math.ceil(q * len(times)) - 1)] if times else math.nan

        med = statistics.median_low(times) if times else math.nan
        return [
            self.name,
            f"{done}/{len(self.reseat)}",
            fmt(med),
            fmt(pct(0.99)),
            fmt(times[-1]) if times else "-",
            f"{self.moved} of {self.live}" if self.live else "-",
            f"{self.lapsed} of {self.clients}",
            f"{self.max_held} / {self.limit}" if self.max_held is not None else "-",
        ]


HEADER = [
    "row",
    "re-seated",
    "re-seat median s",
    "p99 s",
    "max s",
    "live servers' clients moved",
    "leases lapsed",
    "max held",
]


async def settle(fleet: Fleet, fault: Fault, limit: float) -> None:
    """Until the victim's clients hold again (at most `limit` s), then two grants more
    for every client (at most 20 s)."""
    if await fleet.until(lambda: fleet.reseated(fault.victim, fault.t0, fault.back), limit):
        t1 = time.monotonic()
        await fleet.until(lambda: fleet.granted_since(t1, 2), 20.0)


async def loaded_run(load: int, fault_name: str, args: argparse.Namespace) -> tuple[Outcome, str]:
    """One fresh pool, loaded, one fault; the clients' outcome and a CPU note."""
    pool = make_pool(
        n=3,
        seats=SEATS,
        dist=DIST,
        tls=not args.plaintext,
        timing=Timing(),
        extra_args=FLEET_BUDGETS,  # the fleet's clients stand for many hosts
    )
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        await pool.start_led_by("A")
        trust = pool.trust("client")
        await asyncio.gather(*(serving(pool.rlf, trust, sid, license=APP) for sid in pool.ids))
        async with Fleet(pool.rlf, trust, license=APP, prefix=f"b{load}") as fleet:
            await fleet.seat(LOADS[load])
            if sum(LOADS[load].values()) >= SEATS and args.waiters:
                per = {
                    sid: args.waiters // 3 + (i < args.waiters % 3) for i, sid in enumerate(DIST)
                }
                fleet.queue(per)
            fault = await faults(args.pause, args.restart_after)[fault_name](pool)
            await settle(fleet, fault, args.limit)
            out = fleet.outcome(fault.victim, fault.t0, fault.back)
    finally:
        pool.close()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return (
        out,
        f"clients' process {cpu:.1f} s CPU in {wall:.1f} s ({100 * cpu / wall:.0f} % of a core)",
    )


async def loaded_rows(args: argparse.Namespace) -> list[Row]:
    rows = []
    for load in args.loads:
        for fault_name in args.faults:
            row = Row(f"{load} % load, {fault_name.replace('-', ' ')}")
            for _ in range(args.runs):
                out, cpu = await loaded_run(load, fault_name, args)
                row.add(out, SEATS)
                print(f"  {row.name}: {out.summary(SEATS)}; {cpu}", flush=True)
            rows.append(row)
    return rows


# ---------------------------------------------------------------- the baseline


def all_up_with_leader(status: dict[str, Any]) -> bool:
    leader = leader_of(status)
    if leader is None:
        return False
    roles = {s["id"]: s.get("role") for s in status["servers"]}
    return all(s.get("up") for s in status["servers"]) and all(
        roles[sid] == ("leader" if sid == leader else "follower") for sid in roles
    )


async def one_client_run(pool: LivePool, run: int) -> tuple[float, float, int]:
    """One client on the empty pool, holding from the leader; kill -9 the leader:
    (re-seat time, time to a new leader, lost events). The victim is restarted."""
    status = await pool.wait_status(all_up_with_leader, "all servers up with a leader", 60)
    victim = status["leader"]
    trust = pool.trust("client")
    await serving(pool.rlf, trust, victim, license=APP)
    client = LicenseClient(pool.rlf, trust, client_id=f"baseline-{run}", prefer=victim)
    moved = asyncio.Event()
    moved_at: list[float] = []
    lost: list[str] = []
    victim_gone = False

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "lost":
            lost.append(str(event.get("reason")))
        if victim_gone and event["event"] == "authorized" and event["server"] != victim:
            moved_at.append(time.monotonic())
            moved.set()

    lease = client.acquire(APP, wait=True, on_event=on_event)
    async with asyncio.timeout(60):
        await lease.start()
    if lease.server != victim:
        raise SystemExit(f"baseline client seated by {lease.server}, not the leader {victim}")
    try:
        victim_gone = True
        t0 = time.monotonic()
        pool.kill(victim)
        await pool.wait_status(lambda s: leader_of(s) not in (None, victim), "a new leader", 60)
        t_leader = time.monotonic() - t0
        async with asyncio.timeout(60):
            await moved.wait()
    finally:
        await lease.stop()
    pool.start(victim)
    return moved_at[0] - t0, t_leader, len(lost)


async def baseline_row(args: argparse.Namespace) -> Row:
    row = Row("baseline: 1 client, empty pool, leader killed")
    pool = make_pool(
        n=3,
        seats=SEATS,
        dist=DIST,
        tls=not args.plaintext,
        timing=Timing(),
        extra_args=FLEET_BUDGETS,  # the fleet's clients stand for many hosts
    )
    leaders = []
    try:
        await pool.start_led_by("A")
        for i in range(args.baseline_runs):
            seat, t_leader, lost = await one_client_run(pool, i)
            row.reseat.append(seat)
            row.lapsed += lost
            row.clients += 1
            leaders.append(t_leader)
            print(f"  baseline run {i + 1}: new seat {seat:.2f} s, new leader {t_leader:.2f} s")
    finally:
        pool.close()
    row.notes.append(
        f"baseline: kill -9 -> new leader with a majority, median "
        f"{statistics.median(leaders):.2f} s, "
        f"max {max(leaders):.2f} s ({len(leaders)} runs)"
    )
    return row


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=1, help="pools per loaded row (default 1)")
    ap.add_argument("--baseline-runs", type=int, default=5, help="0: no baseline row")
    ap.add_argument("--loads", default="78,100", help="percent loads: 78 and/or 100")
    ap.add_argument("--faults", default=",".join(faults(0)), help="comma-separated fault names")
    ap.add_argument("--waiters", type=int, default=6, help="waiting clients on a full pool")
    ap.add_argument("--pause", type=float, default=4.0, help="SIGSTOP length, seconds")
    ap.add_argument(
        "--restart-after", type=float, default=2.0, help="kill -9 to restart (s) for *-restarted"
    )
    ap.add_argument("--limit", type=float, default=30.0, help="give up re-seating after (s)")
    ap.add_argument("--plaintext", action="store_true", help="--insecure-loopback daemons")
    ap.add_argument("--heal", action="store_true", help="only the heal rows (bench/_netns.py)")
    _netns.add_arguments(ap)
    args = ap.parse_args()
    args.loads = [int(x) for x in args.loads.split(",") if x]
    args.faults = [x for x in args.faults.split(",") if x]
    bad = [x for x in args.loads if x not in LOADS] + [x for x in args.faults if x not in faults(0)]
    if bad:
        ap.error(f"unknown load or fault: {bad} (loads {list(LOADS)}, faults {list(faults(0))})")
    return args


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    if args.heal:
        _netns.heal_section(args, runs=args.runs)
        return
    timing = Timing()
    # the case users live in first (a pool in use), the easy case after it as the baseline
    makers: list[Callable[[argparse.Namespace], Awaitable[list[Row]]]] = [loaded_rows]
    if args.baseline_runs:

        async def baseline(a: argparse.Namespace) -> list[Row]:
            return [await baseline_row(a)]

        makers.append(baseline)

    async def run() -> list[Row]:
        rows: list[Row] = []
        for make in makers:
            rows += await make(args)
        return rows

    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    rows = asyncio.run(run())
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemon_cpu = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
    target = 2 * timing.client_heartbeat + 1.0
    print(
        f"\nfail-over of a pool in use: 3 servers, {SEATS} seats (A:40 B:30 C:30), "
        f"{'plaintext' if args.plaintext else 'TLS 1.3'}, default timings (client heartbeat "
        f"{timing.client_heartbeat:g} s, client lease {timing.client_lease:g} s, leader timeout "
        f"{timing.leader_timeout:g} s, server lease {timing.server_lease:g} s); "
        f"{args.runs} pool(s) per row; {args.waiters} waiting clients on a full pool; "
        f"pause {args.pause:g} s; restart after {args.restart_after:g} s\n"
    )
    print(markdown(HEADER, [r.cells() for r in rows]))
    print(
        f"\ntarget (L2): re-seat p99 <= {target:g} s (2 x client heartbeat + 1 s), 0 moved, "
        f"0 lapsed, max held <= {SEATS}"
    )
    for r in rows:
        for note in r.notes:
            print(note)
    wall = time.monotonic() - t0
    print(
        f"daemons: {daemon_cpu:.1f} s CPU over {wall:.0f} s of benchmark "
        f"({100 * daemon_cpu / wall:.0f} % of a core)"
    )


if __name__ == "__main__":
    main()
