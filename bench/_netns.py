"""Heal time after a real partition (the `--heal` section of `bench/failover.py`).

Three `lm-daemon`s, each in its own network namespace on a bridge (the harness of
`tests/netns/netlab.py`; Linux, root), TLS, the RLF's default timings, 100 seats. Each
episode: a whole pool; in the namespace of the leader or of a follower, seat holders
(the `LicenseClient` library), 2 preferring that server and 2 a server across the cut,
all holding seats; that namespace is cut off (its bridge port disabled: a silent drop)
for 15, 30 or 45 s; then healed. A third row per cut length cuts off a namespace with
only clients (2 preferring the leader, 2 a follower): the pool stays whole, and what is
measured is the client library finding its way back. Measured from the
heal: until the pool is whole (one leader, every server following it and serving) and
until every holder in the cut namespace holds a seat again. Target: both within 3 s.

Baseline, measured in the same run: the holders' first seats on the whole pool before
the cut (from starting the holder process: interpreter start-up, connect, TLS, grant).

    .venv/bin/python bench/failover.py --heal [--cuts 15,30,45] [--runs 1]
    .venv/bin/python bench/_netns.py [--cuts 15,30,45] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "netns"))

from netlab import Episode, NetLab, Watcher, episode, unavailable, write_net_pool

TARGET = 3.0
HEAL_WAIT = 60.0  # how long to wait after a heal before calling the episode a failure


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--cuts", default="15,30,45", help="cut lengths in seconds (comma list)")
    ap.add_argument(
        "--roles",
        default="leader,follower,client",
        help="what is cut off: the leader's namespace, a follower's, or one with clients only",
    )
    ap.add_argument("--clients", type=int, default=2, help="holders per group in the cut namespace")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


async def _episodes(cuts: list[float], roles: list[str], runs: int, clients: int) -> list[Episode]:
    lab = NetLab(["A", "B", "C", "X"])  # X: clients only
    root = Path(tempfile.mkdtemp(prefix="lm-heal-"))
    out: list[Episode] = []
    with lab:
        pool = write_net_pool(lab, root, dist={"A": 40, "B": 30, "C": 30}, servers=["A", "B", "C"])
        watcher = Watcher(pool)
        try:
            pool.start_all()
            for sid in pool.ids:
                await pool.wait_listening_async(sid)
            for cut in cuts:
                for role in roles:
                    for _ in range(runs):
                        ep = await episode(
                            pool, watcher, role, cut, clients=clients, heal_wait=HEAL_WAIT
                        )
                        out.append(ep)
                        print(
                            f"cut {role:<8} {cut:4.0f} s ({ep.victim}): whole {_fmt(ep.whole)} s, "
                            f"seated {_fmt(ep.seated)} s, first seat {_fmt(ep.first_seat)} s"
                            + (f"  [{ep.note}]" if ep.note else ""),
                            flush=True,
                        )
        finally:
            await watcher.aclose()
            pool.stop_all()
            if failed := [e for e in out if e.healed is None]:
                print(f"{len(failed)} episode(s) did not heal; logs kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    return out


def heal_section(args: argparse.Namespace, runs: int) -> None:
    """Run the heal matrix and print its table (see the module docstring)."""
    why = unavailable()
    if why is not None:
        print(f"heal rows skipped: {why}")
        return
    cuts = [float(c) for c in args.cuts.split(",")]
    roles = [r.strip() for r in args.roles.split(",")]
    eps = asyncio.run(_episodes(cuts, roles, runs, args.clients))
    firsts = [e.first_seat for e in eps if e.first_seat is not None]
    base = statistics.median(firsts) if firsts else float("nan")
    print(
        f"\nheal after a partition (3 servers in namespaces, TLS, default timings, "
        f"2 x {args.clients} holders in the cut namespace); seconds after the heal, "
        f"target <= {TARGET:g} s"
    )
    print(f"{'cut off':<10} {'cut s':>6} {'whole':>7} {'seated':>7} {'healed':>7} {'/ base':>7}")
    for e in eps:
        ratio = "-" if e.healed is None else f"{e.healed / base:.1f}"
        print(
            f"{e.role:<10} {e.cut:6.0f} {_fmt(e.whole):>7} {_fmt(e.seated):>7} "
            f"{_fmt(e.healed):>7} {ratio:>7}"
        )
    print(f"{'baseline: first seat (median)':<33} {base:7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_arguments(ap)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    heal_section(args, args.runs)


if __name__ == "__main__":
    main()
