"""The patent's worked example (FIG. 7-11) on real `lm-daemon` processes with TLS.

Three servers A, B, C; "Application 1.0", hard limit 100, distribution A:40 B:30 C:30;
one client on each server (FIG. 8: pool available 97); A dies; B leads (FIG. 9: A's row
0 in use, 40 available); A's client fails over to B (FIG. 10: B 2 in use, 28 available);
A comes back as a follower with 0 in use and 40 available (FIG. 11).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest

from lm_core.engine.rlf import Timing

from .conftest import APP, Pool, conserved, license_of, rows

pytestmark = pytest.mark.integration


def _fig8(st: dict[str, Any]) -> bool:
    lic = license_of(st)
    return (
        st["leader"] == "A"
        and lic is not None
        and lic["pool_available"] == 97
        and rows(st) == {"A": (40, 1, 39), "B": (30, 1, 29), "C": (30, 1, 29)}
    )


def _fig9(st: dict[str, Any]) -> bool:
    lic = license_of(st)
    return (
        st["leader"] == "B"
        and lic is not None
        and lic["pool_available"] == 98
        and rows(st) == {"A": (40, 0, 40), "B": (30, 1, 29), "C": (30, 1, 29)}
    )


def _fig10(st: dict[str, Any]) -> bool:
    lic = license_of(st)
    return (
        st["leader"] == "B"
        and lic is not None
        and lic["pool_available"] == 97
        and rows(st) == {"A": (40, 0, 40), "B": (30, 2, 28), "C": (30, 1, 29)}
    )


def _fig11(st: dict[str, Any]) -> bool:
    lic = license_of(st)
    servers = {s["id"]: s for s in st["servers"]}
    return (
        _fig10(st)
        and servers["A"]["reachable"]
        and servers["A"]["role"] == "follower"
        and servers["A"]["up"]
        and lic is not None
        and {k: lic["own"].get("A", {}).get(k) for k in ("distribution", "in_use", "available")}
        == {"distribution": 40, "in_use": 0, "available": 40}
    )


# Wider election gaps than FAST, so "A first" wins even on a loaded CI machine. Clients
# heartbeat every 4 s: while B is being elected, B and C hold no lease from a majority
# leader and must refuse renewals (S3), and a refused client walks on to another server;
# the test kills A just after B's and C's clients renewed, so their next heartbeat comes
# after the election, as in the patent's story.
TIMING = Timing(
    heartbeat_interval=0.25,
    leader_timeout=1.0,
    server_lease=0.75,
    client_heartbeat=4.0,
    client_lease=12.0,
    drift=0.05,
)


def _just_renewed(st: dict[str, Any]) -> bool:
    ages = {c["client_id"]: c["last_heartbeat_age"] for c in st["clients"]}
    return all(ages.get(cid) is not None and ages[cid] < 1.0 for cid in ("client-B", "client-C"))


def test_figs_8_to_11_on_real_daemons(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(timing=TIMING)
    pool.start("A")
    pool.wait(lambda st: st["servers"][0]["reachable"], "A answers status")
    pool.start("B")
    pool.start("C")
    pool.wait(
        lambda st: st["leader"] == "A" and all(s["up"] for s in st["servers"]),
        "A leads a pool of three",
    )
    holders = {
        sid: pool.hold(
            "--license", APP, "--client-id", f"client-{sid}", "--server", sid, "--seconds", "600"
        )
        for sid in "ABC"
    }
    st = pool.wait(_fig8, "FIG. 8: one client on each server, pool available 97")
    assert {(c["client_id"], c["server"]) for c in st["clients"]} == {
        ("client-A", "A"),
        ("client-B", "B"),
        ("client-C", "C"),
    }
    assert conserved(st)

    # A's client stays still so FIG. 9 (before it fails over) can be seen.
    pool.wait(lambda st: _fig8(st) and _just_renewed(st), "B's and C's clients just renewed")
    holders["A"].send_signal(signal.SIGSTOP)
    pool.kill("A")
    st = pool.wait(_fig9, "FIG. 9: B leads; A's row 0 in use, 40 available; pool 98")
    assert conserved(st)

    holders["A"].send_signal(signal.SIGCONT)
    st = pool.wait(_fig10, "FIG. 10: A's client re-authorized by B (B 2 in use, 28 available)")
    holding = {c["client_id"]: c["server"] for c in st["clients"]}
    assert holding.get("client-A") == "B", json.dumps(st["clients"])
    assert conserved(st)

    pool.start("A")
    st = pool.wait(_fig11, "FIG. 11: A follows with 0 in use and 40 available")
    assert conserved(st)
    assert all(h.poll() is None for h in holders.values()), "a client lost its seat"
