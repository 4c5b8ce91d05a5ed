"""`lm server drain` / `lm server resume` on real daemons.

A full pool (Application 1.0, 12 seats, A:4 B:4 C:4, A leading, the RLF's default
timings, TLS) with every seat held by clients of the real client library and two more
waiting for a seat. Draining follower B: every client of B ends on another server with
its seat, no lease lapses, no client of A or C moves, and never more than 12 seats are
held at once (counted from the clients, `lm_core.runtime.fleet`: the waiters would get
in if the pool over-issued). `lm status` (table and --json) shows B drained; B still
counts in the majority. `lm server resume B` puts it back: it serves again (a second license,
one seat per server, shows who serves a new client).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from lm_core.engine.rlf import Timing
from lm_core.runtime.fleet import Fleet, serving
from lm_core.runtime.localpool import FLEET_BUDGETS
from lm_core.runtime.tlsconfig import load_tls_dir

from .conftest import APP, Pool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOMES = {"A": 4, "B": 4, "C": 4}
LIMIT = 12
OTHER = "Other 1.0"  # a second license, one seat per server, to see who serves it


def hold_once(pool: Pool, server: str, client_id: str) -> list[dict[str, Any]]:
    """`lm client hold` of one OTHER seat asking `server` first; its JSON events."""
    done = pool.lm("client", "hold", "--license", OTHER, "--server", server,
                   "--client-id", client_id, "--seconds", "0", "--json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


async def test_drain_moves_every_client_with_its_seat_and_resume_serves_again(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(timing=Timing(), seats=LIMIT, dist=HOMES, extra_args=FLEET_BUDGETS)
    await pool.start_led_by_async("A")
    code = pool.issue(seats=3, product="Other", version="1.0")
    added = await asyncio.to_thread(pool.lm, "code", "add", code)
    assert added.returncode == 0, added.stdout + added.stderr
    assert pool.tls_dir is not None
    trust = load_tls_dir(pool.tls_dir, "client")
    await asyncio.gather(*(serving(pool.rlf, trust, sid, license=APP) for sid in HOMES))
    async with Fleet(pool.rlf, trust, license=APP, prefix="dr") as fleet:
        await fleet.seat(HOMES)
        assert {sid: len(fleet.on(sid)) for sid in HOMES} == HOMES
        fleet.queue({"A": 1, "C": 1})  # on a full pool they wait

        t0 = time.monotonic()
        drained = await asyncio.to_thread(pool.lm, "server", "drain", "B")
        assert drained.returncode == 0, drained.stdout + drained.stderr
        assert "B drained" in drained.stdout

        moved_off = await fleet.until(lambda: fleet.reseated("B", t0), 30.0)
        t1 = time.monotonic()
        await fleet.until(lambda: fleet.granted_since(t1, 2), 20.0)
        out = fleet.outcome("B", t0, math.inf)
        print(out.summary(LIMIT))
        assert moved_off, out.summary(LIMIT)
        assert out.victims == HOMES["B"]
        assert all(d is not None for d in out.reseat.values()), out.reseat
        assert not fleet.on("B")
        assert all(s is not None for s in fleet.holding().values()), fleet.holding()
        assert not out.lapsed, out.lapsed
        assert not out.moved, out.moved  # A's and C's clients stay where they are
        assert out.max_held <= LIMIT, f"over-issued: {out.max_held} held at once"
        assert not any(m.lease.holds for m in fleet.queued)

        st = await pool.wait_async(
            lambda st: not [c for c in st["clients"] if c["server"] == "B" and c["license"] == APP],
            "B's key table empty",
        )
        assert st["drained"] == ["B"]
        assert {s["id"]: s["drained"] for s in st["servers"]} == {"A": False, "B": True, "C": False}
        table = await asyncio.to_thread(pool.lm, "status")
        assert "(drained)" in table.stdout, table.stdout
        as_json = json.loads((await asyncio.to_thread(pool.lm, "status", "--json")).stdout)
        assert as_json["drained"] == ["B"]

        # B refuses new clients too: asked first, it sends them on
        events = await asyncio.to_thread(hold_once, pool, "B", "probe1")
        granted = [e for e in events if e["event"] == "authorized"]
        assert granted, events
        assert granted[0]["server"] != "B"

        # B still counts in the majority: with C stopped, A and B keep serving
        pool.kill("C")
        await pool.wait_async(
            lambda st: st["leader"] == "A" and st["majority"]["ok"], "A serves without C"
        )
        pool.start("C")
        await pool.wait_async(
            lambda st: all(s["up"] and s["reachable"] for s in st["servers"]), "C back"
        )

        resumed = await asyncio.to_thread(pool.lm, "server", "resume", "B")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        st = await pool.wait_async(lambda st: not st["drained"], "the drain lifted everywhere")
        assert not any(s["drained"] for s in st["servers"])
        # B's unused OTHER seat went to the server that served probe1 meanwhile (a
        # drained server's unused seats are a borrowing source): give it one back
        dist = await asyncio.to_thread(pool.lm, "dist", "set", OTHER, "A:1,B:1,C:1")
        assert dist.returncode == 0, dist.stdout + dist.stderr
        await pool.wait_async(
            lambda st: any(
                lic["license"] == OTHER and (lic["own"].get("B") or {}).get("allowed") == 1
                for lic in st["licenses"]
            ),
            "B allowed its OTHER seat",
        )
        events = await asyncio.to_thread(hold_once, pool, "B", "probe2")
        assert [e["server"] for e in events if e["event"] == "authorized"] == ["B"], events
        assert fleet.max_held <= LIMIT
