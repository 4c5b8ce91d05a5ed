"""Majority rule and restart grace on real processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from lm_core.runtime.client import LicenseClient, LicenseDenied

from .conftest import APP, Pool, conserved, held_total

pytestmark = pytest.mark.integration


def _all_up(st: dict[str, Any]) -> bool:
    return st["leader"] is not None and all(s["up"] and s["reachable"] for s in st["servers"])


def _ask(pool: Pool, client_id: str, server: str) -> tuple[int, str]:
    """One short `lm client hold` (grant then release); (exit code, output)."""
    out = pool.lm(
        "client",
        "hold",
        "--license",
        APP,
        "--client-id",
        client_id,
        "--server",
        server,
        "--seconds",
        "0",
        "--json",
        timeout=60,
    )
    return out.returncode, out.stdout + out.stderr


def _ask_only(pool: Pool, client_id: str, server: str) -> str:
    """Ask one server alone (library client); its deny reason, or "granted"."""
    address = pool.rlf.server(server).address

    async def go() -> str:
        client = LicenseClient([(server, address)], None, pool=pool.rlf.pool, client_id=client_id)
        try:
            async with client.acquire(APP):
                return "granted"
        except LicenseDenied as denied:
            return denied.reason

    return asyncio.run(go())


def test_minority_denies_then_service_resumes(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(_all_up, "three servers with a leader")
    code, out = _ask(pool, "before", "A")
    assert code == 0, out

    pool.kill("B")
    pool.kill("C")
    pool.wait(
        lambda st: st["servers"][0]["reachable"] and st["servers"][0]["serving"] is False,
        "A alone stops serving",
    )
    code, out = _ask(pool, "alone", "A")
    assert code == 1, out
    assert _ask_only(pool, "alone", "A") == "no_majority"

    pool.start("B")
    pool.wait(
        lambda st: (
            st["leader"] is not None
            and st["majority"]["ok"]
            and st["servers"][0]["serving"] is True
        ),
        "A and B form a majority again",
    )
    code, out = _ask(pool, "after", "A")
    assert code == 0, out


def test_restarted_follower_keeps_its_clients_and_never_over_issues(
    pool_factory: Callable[..., Pool],
) -> None:
    # six seats, two per server, every seat held: any over-issue would show as > 6
    pool = pool_factory(tls=False, seats=6, dist={"A": 2, "B": 2, "C": 2})
    for sid in pool.ids:
        pool.start(sid)
    st = pool.wait(_all_up, "three servers with a leader")
    victim = [sid for sid in pool.ids if sid != st["leader"]][-1]  # a follower
    index = pool.ids.index(victim)
    for sid in pool.ids:
        for i in range(2):
            pool.hold(
                "--license", APP, "--client-id", f"{sid}{i}", "--server", sid, "--seconds", "600"
            )
    st = pool.wait(lambda st: held_total(st) == 6, "all six seats held")
    on_victim = {c["client_id"] for c in st["clients"] if c["server"] == victim}
    assert on_victim  # (a client denied by its first choice may have walked on)

    observed: list[int] = []

    def check(st: dict[str, Any]) -> bool:
        observed.append(held_total(st))
        assert held_total(st) <= 6, json.dumps(st["clients"])
        assert conserved(st)
        return True

    pool.kill(victim)
    pool.start(victim)
    st = pool.wait(
        lambda st: (
            check(st)
            and st["servers"][index]["reachable"]
            and st["servers"][index]["role"] == "follower"
            and held_total(st) == 6
            and on_victim <= {c["client_id"] for c in st["clients"]}
        ),
        f"{victim} back; its clients hold their seats",
    )
    assert all(h.poll() is None for h in pool.holders), "a client lost its seat"
    # the pool is still full: a seventh client is refused
    code, out = _ask(pool, "seventh", "A")
    assert code == 1, out
    assert max(observed) <= 6
