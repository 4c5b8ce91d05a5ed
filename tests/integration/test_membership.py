"""Growing and shrinking a running pool through a newer RLF, on real daemons (TLS).

A server listed in a newer RLF than the running pool's is started with that RLF: it
offers it, the pool adopts it (validly signed, higher sequence, lists the newcomer) and
the newcomer joins as a follower -- nobody pushed anything. Then an RLF that drops a
server is pushed (`lm rlf push`): the dropped server is told, stops serving, and says
so in its log and its status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lm_core.engine.rlf import ServerEntry, with_server, without_server
from lm_core.runtime.localpool import free_ports, write_tls

from .conftest import APP, Pool, all_up

pytestmark = pytest.mark.integration


def test_a_server_of_a_newer_rlf_joins_and_a_dropped_one_stops(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "A, B and C up with a leader")
    old_seq = pool.rlf.sequence

    # D is in seq+1 only; it gets a certificate from the pool's CA, as `lm pki init` does
    newer = with_server(pool.rlf, ServerEntry("D", "127.0.0.1", free_ports(1)[0]))
    path = pool.signed(newer, pool.root / "pool-with-d.rlf")
    assert pool.tls_dir is not None
    write_tls(pool.tls_dir, newer)
    pool.rlf, pool.rlf_path = newer, path
    pool.start("D")

    def joined(st: dict[str, Any]) -> bool:
        rows = {s["id"]: s for s in st["servers"]}
        return (
            all_up(st)
            and set(rows) == {"A", "B", "C", "D"}
            and all(s["rlf_seq"] == old_seq + 1 for s in rows.values())
            and rows["D"]["role"] == "follower"
        )

    st = pool.wait(joined, "D joined: every server on the new RLF, D following", timeout=40)
    assert st["rlf_seq"] == old_seq + 1
    assert "joins: it offered RLF seq" in pool.logs[st["leader"]].read_text()
    held = pool.lm("client", "hold", "--license", APP, "--server", "D", "--client-id", "d1",
                   "--seconds", "0", "--json")  # fmt: skip
    assert held.returncode == 0, held.stdout + held.stderr

    # drop C (a follower) with `lm rlf push`: C is told and stops serving
    victim = next(s for s in ("C", "B") if s != st["leader"])
    smaller = pool.signed(without_server(newer, victim), pool.root / "pool-without.rlf")
    pushed = pool.lm("rlf", "push", str(smaller))
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr

    def dropped(st: dict[str, Any]) -> bool:
        row = next(s for s in st["servers"] if s["id"] == victim)
        return "removed from pool" in str(row.get("not_serving_reason"))

    st = pool.wait(dropped, f"{victim} says it was removed", timeout=30)
    row = next(s for s in st["servers"] if s["id"] == victim)
    assert row["serving"] is False
    assert f"{victim} was removed from pool" in pool.logs[victim].read_text()
    rest = [s for s in st["servers"] if s["id"] != victim]
    assert all(s["rlf_seq"] == old_seq + 2 for s in rest), rest
    assert st["majority"]["ok"]
