"""A follower stopped and started again rejoins its pool, whether it was killed (kill -9)
or stopped cleanly (SIGTERM, as systemd and a rolling upgrade do), over TLS.

A clean stop over TLS is not always seen as EOF by the peers' links to it; the restarted
server dials them afresh, and a peer dialled afresh drops its own (possibly dead) link
and dials back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Pool

pytestmark = pytest.mark.integration


def _all_follow(st: dict[str, Any]) -> bool:
    return bool(st.get("leader")) and all(
        s.get("reachable") and s.get("role") in ("leader", "follower") for s in st["servers"]
    )


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_a_restarted_follower_rejoins(pool_factory: Callable[..., Pool], how: str) -> None:
    pool = pool_factory(tls=True)
    for sid in pool.ids:
        pool.start(sid)
    st = pool.wait(_all_follow, "three servers with a leader")
    victim = [sid for sid in pool.ids if sid != st["leader"]][-1]
    getattr(pool, how)(victim)
    pool.start(victim)
    st = pool.wait(_all_follow, f"{victim} back as a follower", timeout=20)
    assert {s["id"]: s["role"] for s in st["servers"]}[victim] == "follower"
