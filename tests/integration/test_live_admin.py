"""Live admin operations on real daemons while clients hold seats: add a license code,
add allocations, change the distribution, push a newer RLF; every functioning server
shows each change, the leader's table stays conserved, and lower-sequence or tampered
RLFs are refused by every server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from lm_core.engine import messages as m
from lm_core.engine.keys import load_private
from lm_core.engine.rlf import render_rlf, sign_rlf
from lm_core.runtime.connection import Connection
from lm_core.runtime.tlsconfig import admin_context, load_tls_dir

from .conftest import APP, Pool, all_up, conserved, held_total, license_of, rows

pytestmark = pytest.mark.integration
OTHER = "Other 2.0"


def _every_server(pool: Pool) -> dict[str, dict[str, Any] | None]:
    async def go(c: Any) -> dict[str, dict[str, Any] | None]:
        answers = await asyncio.gather(*(c.server_status(sid) for sid in pool.ids))
        return dict(zip(pool.ids, answers, strict=True))

    return pool.run(go)  # type: ignore[no-any-return]


def _hard_limits(pool: Pool, name: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for sid, st in _every_server(pool).items():
        lic = license_of(st, name) if st else None
        out[sid] = lic["hard_limit"] if lic else None
    return out


def _send_everywhere(pool: Pool, make: Callable[[int], m.Message]) -> dict[str, m.Message]:
    """Send one admin message straight to each server (no local checks)."""
    assert pool.tls_dir is not None
    paths = load_tls_dir(pool.tls_dir, "admin")
    assert paths is not None
    ctx = admin_context(paths)

    async def one(sid: str, i: int) -> m.Message:
        async with await Connection.open(pool.rlf.server(sid).address, ssl=ctx) as conn:
            return await conn.request(make(i), reply_timeout=15)

    async def go() -> dict[str, m.Message]:
        replies = await asyncio.gather(*(one(sid, i) for i, sid in enumerate(pool.ids)))
        return dict(zip(pool.ids, replies, strict=True))

    return asyncio.run(go())


def test_live_admin_operations_while_clients_hold(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    st = pool.wait(all_up, "three servers up with a leader")
    for sid in pool.ids:
        pool.hold(
            "--license", APP, "--client-id", f"client-{sid}", "--server", sid, "--seconds", "600"
        )
    pool.wait(lambda st: held_total(st) == 3 and conserved(st), "three seats held")

    # ADD_LICENSE_CODE: a new license reaches every server
    out = pool.lm("code", "add", pool.issue(seats=12, product="Other", version="2.0"))
    assert out.returncode == 0, out.stderr
    pool.wait(
        lambda st: (
            (lic := license_of(st, OTHER)) is not None
            and lic["hard_limit"] == 12
            and set(lic["own"]) == {"A", "B", "C"}
            and conserved(st)
        ),
        "every server serves Other 2.0",
    )

    # ADD_ALLOCATIONS: an add-on code raises the hard limit everywhere
    out = pool.lm("alloc", "add", pool.issue(seats=20, kind="add"))
    assert out.returncode == 0, out.stderr
    pool.wait(
        lambda st: (license_of(st) or {}).get("hard_limit") == 120 and conserved(st),
        "hard limit 120 on the leader",
    )
    assert _hard_limits(pool, APP) == {"A": 120, "B": 120, "C": 120}

    # CHANGE_DISTRIBUTION: the leader's table and every follower's own row follow
    out = pool.lm("dist", "set", APP, "A:50,B:25,C:25")
    assert out.returncode == 0, out.stderr

    def dist_done(st: dict[str, Any]) -> bool:
        lic = license_of(st) or {}
        own = {sid: r.get("distribution") for sid, r in lic.get("own", {}).items()}
        return (
            {sid: r[0] for sid, r in rows(st).items()} == {"A": 50, "B": 25, "C": 25}
            and lic.get("free_pool") == 20
            and own == {"A": 50, "B": 25, "C": 25}
            and {sid: r[1] for sid, r in rows(st).items()} == {"A": 1, "B": 1, "C": 1}
            and conserved(st)
        )

    pool.wait(dist_done, "distribution A:50 B:25 C:25 everywhere, free pool 20")

    # UPDATE_RLF: a newer signed RLF reaches every server; clients keep their seats
    old_text = pool.rlf_path.read_text()
    newer = dataclasses.replace(
        pool.rlf, sequence=pool.rlf.sequence + 1, borrowing_threshold=0.7, signature=None
    )
    newer = sign_rlf(newer, load_private(pool.admin_private))
    newer_path = pool.signed(newer, pool.root / "newer.rlf")
    out = pool.lm("rlf", "push", str(newer_path), "--pool-from", str(pool.rlf_path))
    assert out.returncode == 0, out.stdout + out.stderr
    for sid in pool.ids:
        assert sid in out.stdout
    assert out.stdout.count(f"seq {newer.sequence}") >= 3
    st = pool.wait(
        lambda st: (
            all(s["rlf_seq"] == newer.sequence for s in st["servers"])
            and held_total(st) == 3
            and conserved(st)
        ),
        "every server runs the new RLF, seats still held",
    )
    assert all(h.poll() is None for h in pool.holders), "a client lost its seat"

    # a lower sequence is refused locally by the CLI ...
    out = pool.lm("rlf", "push", str(pool.rlf_path), "--pool-from", str(newer_path))
    assert out.returncode == 2
    assert "not above the pool's sequence" in out.stderr

    # ... and by every server when sent anyway, as is a tampered RLF
    def update(text: str) -> Callable[[int], m.Message]:
        return lambda i: m.UpdateRlf(
            pool=pool.rlf.pool, sender="itest", request_id=100 + i, rlf_text=text
        )

    newest = dataclasses.replace(
        newer, sequence=newer.sequence + 1, borrowing_threshold=0.65, signature=None
    )
    tampered = render_rlf(sign_rlf(newest, load_private(pool.admin_private)))
    tampered = tampered.replace("0.65", "0.6")
    for text, why in ((old_text, "sequence"), (tampered, "signature")):
        replies = _send_everywhere(pool, update(text))
        for sid, reply in replies.items():
            assert isinstance(reply, m.AdminReply), (sid, reply)
            assert not reply.ok, (sid, reply)
            assert why in reply.message, (sid, reply.message)
    st = pool.status()
    assert all(s["rlf_seq"] == newer.sequence for s in st["servers"])
    assert held_total(st) == 3
