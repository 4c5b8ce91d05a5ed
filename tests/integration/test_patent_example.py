"""The patent's worked example (FIG. 7-11) on real `lm-daemon` processes with TLS.

Three servers A, B, C; "Application 1.0", hard limit 100, distribution A:40 B:30 C:30;
one client on each server (FIG. 8: pool available 97); A dies; B leads (FIG. 9: A's row
0 in use, 40 available); A's client fails over to B (FIG. 10: B 2 in use, 28 available);
A comes back as a follower with 0 in use and 40 available (FIG. 11).

Each client is an `lm client hold --json` process; its events (grants, with the server,
and losses) are its own view. At the RLF's default timings and with A killed at a random
moment (seeded: `LM_PATENT_SEED` replays one), only A's client changes server and no
client loses its seat: FIG. 10's B 2 in use / C 1 in use, no churn.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lm_core.engine.rlf import Timing
from lm_core.runtime.fleet import serving
from lm_core.runtime.tlsconfig import load_tls_dir

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


def _no_churn(st: dict[str, Any]) -> bool:
    """B's and C's clients are listed by no other server than their own (assert)."""
    astray = [
        (c["client_id"], c["server"])
        for c in st["clients"]
        if c["client_id"] in ("client-B", "client-C") and c["server"] != c["client_id"][-1]
    ]
    assert not astray, f"a healthy server's client changed server: {astray}"
    return True


def _events(log: Path) -> list[dict[str, Any]]:
    """The `--json` events a holder printed (other lines, e.g. a traceback, are kept as
    {"event": "text", "text": ...})."""
    out: list[dict[str, Any]] = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": "text", "text": line})
    return out


def _client_view(pool: Pool) -> dict[str, tuple[list[str], list[str]]]:
    """Per client: (the servers of its grants in order, without repeats; its losses)."""
    view: dict[str, tuple[list[str], list[str]]] = {}
    for sid, log in zip("ABC", pool.hold_logs, strict=True):
        servers: list[str] = []
        lost: list[str] = []
        for ev in _events(log):
            if ev["event"] in ("authorized", "renewed") and servers[-1:] != [ev["server"]]:
                servers.append(ev["server"])
            elif ev["event"] in ("lost", "text"):
                lost.append(str(ev.get("reason", ev.get("text"))))
        view[f"client-{sid}"] = (servers, lost)
    return view


HOLD = ("--license", APP, "--seconds", "600", "--json")


def _past_restart_grace(pool: Pool) -> None:
    """Every server grants (its restart grace, S4, is over), so each client is seated by
    the server it asks first."""
    assert pool.tls_dir is not None
    trust = load_tls_dir(pool.tls_dir, "client")

    async def probe() -> None:
        await asyncio.gather(*(serving(pool.rlf, trust, sid, license=APP) for sid in "ABC"))

    asyncio.run(probe())


def _replay(pool: Pool, kill_moment: Callable[[], None]) -> None:
    """FIG. 8-11 on `pool`; `kill_moment()` returns when A is to be killed."""
    pool.start_led_by("A")
    _past_restart_grace(pool)
    holders = {
        sid: pool.hold(*HOLD, "--client-id", f"client-{sid}", "--server", sid) for sid in "ABC"
    }
    st = pool.wait(_fig8, "FIG. 8: one client on each server, pool available 97", timeout=30)
    assert {(c["client_id"], c["server"]) for c in st["clients"]} == {
        ("client-A", "A"),
        ("client-B", "B"),
        ("client-C", "C"),
    }
    assert conserved(st)

    kill_moment()
    # A's client stays still until B leads, so FIG. 9 (before it fails over) can be seen.
    holders["A"].send_signal(signal.SIGSTOP)
    pool.kill("A")
    try:
        st = pool.wait(
            lambda st: _no_churn(st) and _fig9(st),
            "FIG. 9: B leads; A's row 0 in use, 40 available; pool 98",
        )
        assert conserved(st)
    finally:
        holders["A"].send_signal(signal.SIGCONT)
    st = pool.wait(
        lambda st: _no_churn(st) and _fig10(st),
        "FIG. 10: A's client re-authorized by B (B 2 in use, 28 available)",
    )
    holding = {c["client_id"]: c["server"] for c in st["clients"]}
    assert holding.get("client-A") == "B", json.dumps(st["clients"])
    assert conserved(st)

    pool.start("A")
    st = pool.wait(
        lambda st: _no_churn(st) and _fig11(st),
        "FIG. 11: A follows with 0 in use and 40 available",
        timeout=30,
    )
    assert conserved(st)
    assert all(h.poll() is None for h in holders.values()), "a client stopped"
    view = _client_view(pool)
    assert view == {
        "client-A": (["A", "B"], []),
        "client-B": (["B"], []),
        "client-C": (["C"], []),
    }, f"the clients' own view (servers granting, in order; losses): {view}"


def test_figs_8_to_11_at_default_timings(pool_factory: Callable[..., Pool]) -> None:
    """The RLF's default timings; A dies at a random moment of the clients' heartbeat
    cycle (seeded; `LM_PATENT_SEED=<n>` replays a run)."""
    timing = Timing()
    pool = pool_factory(timing=timing)
    seed = int(os.environ.get("LM_PATENT_SEED") or random.SystemRandom().randrange(10**6))
    delay = random.Random(seed).uniform(0.0, timing.client_heartbeat)
    print(f"LM_PATENT_SEED={seed}: A is killed {delay:.2f} s after FIG. 8")

    def kill_moment() -> None:
        t = time.monotonic() + delay
        pool.wait(lambda st: time.monotonic() >= t, f"{delay:.2f} s after FIG. 8")

    _replay(pool, kill_moment)
