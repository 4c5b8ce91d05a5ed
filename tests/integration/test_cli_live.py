"""`lm status`, `lm key release` and SIGTERM on real daemons."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

import pytest

from .conftest import APP, Pool, all_up, held_total

pytestmark = pytest.mark.integration


def test_status_json_text_and_key_release(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    st = pool.wait(all_up, "three servers up with a leader")
    holder = pool.hold(
        "--license", APP, "--client-id", "stale-1", "--server", "B", "--seconds", "600"
    )
    pool.wait(lambda st: held_total(st) == 1, "stale-1 holds a seat")

    out = pool.lm("status", "--json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert {
        "pool",
        "rlf_seq",
        "leader",
        "term",
        "collected_at",
        "majority",
        "servers",
        "licenses",
        "clients",
        "events",
    } <= set(st)
    leader = st["leader"]
    assert leader in ("A", "B", "C")
    assert st["majority"] == {"up": 3, "size": 3, "ok": True}
    assert [(s["id"], s["reachable"]) for s in st["servers"]] == [
        ("A", True),
        ("B", True),
        ("C", True),
    ]
    assert [(c["client_id"], c["server"]) for c in st["clients"]] == [("stale-1", "B")]

    out = pool.lm("status")
    assert out.returncode == 0, out.stderr
    assert f"leader {leader}" in out.stdout
    assert APP in out.stdout
    assert "stale-1" in out.stdout

    holder.send_signal(signal.SIGSTOP)  # the client hangs: its seat is stale
    out = pool.lm(
        "key", "release", "--client-id", "stale-1", "--license", APP, "--reason", "host hung"
    )
    assert out.returncode == 0, out.stderr
    pool.wait(lambda st: held_total(st) == 0, "the stale seat is reclaimed")
    assert "host hung" in pool.logs["B"].read_text()
    holder.kill()

    out = pool.lm("key", "release", "--client-id", "nobody", "--license", APP, "--reason", "x")
    assert out.returncode == 1
    assert "nobody" in out.stderr


def test_status_with_no_server_running(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    out = pool.lm("status", "--json", "--timeout", "0.5")
    assert out.returncode == 1
    st = json.loads(out.stdout)
    assert st["leader"] is None
    assert all(not s["reachable"] and s["error"] for s in st["servers"])
    assert "no server of the pool answered" in out.stderr


def test_sigterm_exits_cleanly_and_keeps_the_key_table(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    pool.hold("--license", APP, "--client-id", "kept", "--server", "C", "--seconds", "600")
    pool.wait(lambda st: [c["server"] for c in st["clients"]] == ["C"], "kept holds on C")

    assert pool.terminate("C") == 0
    assert "store closed" in pool.logs["C"].read_text()
    pool.start("C")
    pool.wait(
        lambda st: (
            st["servers"][2]["role"] == "follower"
            and held_total(st) == 1
            and all(h.poll() is None for h in pool.holders)
        ),
        "C back as a follower, the client still holds its seat",
    )
