"""The console against real `lm-daemon` processes (TLS on 127.0.0.1), driven by the pilot:
the tables match `lm status --json`, a kill -9 of the leader shows up live, every action
done through the UI takes effect on every server, and refusals send nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.widgets import Button, DataTable, TextArea

from lm_tui.app import LmTuiApp
from lm_tui.modals import CodeScreen, DistributionScreen, PushScreen
from lm_tui.widgets import KeyedTable

pytestmark = pytest.mark.integration

APP = "Application 1.0"
SIZE = (120, 40)
Until = Callable[..., Awaitable[None]]


def live_app(pool: Any, **kwargs: Any) -> LmTuiApp:
    return LmTuiApp(
        pool.source(),
        pool_name=pool.rlf.pool,
        rlf_text=pool.rlf_text,
        interval=0.2,
        blink=False,
        **kwargs,
    )


def _num(v: Any) -> str:
    return "X" if v is None else str(v)


def _grants_on(sid: str, count: int) -> Callable[[dict[str, Any]], bool]:
    """Server `sid` serves (its own view) and may grant `count` seats (its own row).

    Right after "a leader with all three up" a follower often still reports
    `not_serving_reason` "no_majority: B holds no lease from a majority leader" and
    `allowed` 0 (measured: 2 start-ups of 3)."""

    def cond(status: dict[str, Any]) -> bool:
        row = next(x for x in status["servers"] if x["id"] == sid)
        if not row.get("serving"):
            return False
        lic = status["licenses"][0]
        own = lic.get("own", {}).get(sid) or lic["servers"].get(sid) or {}
        free = own.get("available") or 0
        if own.get("allowed") is not None:  # what the leader has let it hand out so far
            free = min(free, own["allowed"] - (own.get("in_use") or 0))
        return free >= count

    return cond


async def test_tables_match_lm_status_json(live_pool: Any, wait_until: Until) -> None:
    from lm_core.runtime.client import LicenseClient
    from lm_core.runtime.tlsconfig import load_tls_dir

    # "A leader with all three up" (the fixture) does not mean B grants yet: until B holds
    # a lease from the leader it refuses (no_majority), and until the leader's
    # distribution sync reaches it, it has no seats of its own -- then the client walks
    # on and gets its seat elsewhere. Wait until B can grant 3 itself.
    await live_pool.wait_for(_grants_on("B", 3), "B serving with 3 seats available")
    trust = load_tls_dir(live_pool.tls_dir, "client")
    client = LicenseClient(live_pool.rlf, trust, client_id="tui-c1", prefer="B")
    async with client.acquire(APP, 3) as lease:
        # wait on the server that actually granted (B, unless it just stopped serving)
        holder = lease.server
        assert holder is not None
        await live_pool.wait_for(
            lambda s: s["licenses"][0]["servers"][holder]["in_use"] == 3,
            f"{holder} (holding the seat) shows 3 in use",
        )
        app = live_app(live_pool)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(
                pilot,
                lambda: app.status is not None and len(app.status["clients"]) == 1,
                "the app sees the client",
            )
            want = await asyncio.to_thread(live_pool.lm_status_json)
            await pilot.press("space")
            await pilot.pause(0.3)
            servers = app.query_one("#servers", KeyedTable).plain_rows()
            assert [(r[0], r[2], r[3], r[4]) for r in servers] == [
                (s["id"], s["role"], str(s["term"]), str(s["rlf_seq"])) for s in want["servers"]
            ]
            for lic in want["licenses"]:
                rows = app._panels[lic["license"]].query_one(KeyedTable).plain_rows()
                got = [[r[0].split()[0], r[1], r[2], r[3]] for r in rows]
                assert got == [
                    [sid, _num(row["distribution"]), _num(row["in_use"]), _num(row["available"])]
                    for sid, row in lic["servers"].items()
                ]
                title = str(app._panels[lic["license"]].query_one(".title").render())
                assert f"hard limit {lic['hard_limit']}" in title
                assert f"pool available {lic['pool_available']}" in title
                assert f"free pool {lic['free_pool']}" in title
            keys = app.query_one("#keys-table", KeyedTable).plain_rows()
            assert [r[:4] for r in keys] == [
                [c["client_id"], c["server"], c["license"], str(c["count"])]
                for c in want["clients"]
            ]
            assert f"leader {live_pool.leader}" in str(app.query_one("#header").render())


async def test_kill_9_of_the_leader_shows_live(live_pool: Any, wait_until: Until) -> None:
    app = live_app(live_pool)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app._leader == live_pool.leader, "the leader")
        dead = live_pool.leader
        row = "ABC".index(dead)
        live_pool.kill9(dead)
        await wait_until(
            pilot,
            lambda: (
                app._leader not in (None, dead)
                and app.query_one("#servers", KeyedTable).plain_rows()[row][5] == "DOWN"
            ),
            f"a new leader and {dead} down",
        )
        header = str(app.query_one("#header").render())
        assert f"leader {app._leader}" in header
        assert "2/3 up, majority ok" in header
        assert f"cannot reach server {dead}" in str(app.query_one("#banner").render())
        assert app.is_running


async def _server_statuses_until(
    pool: Any, cond: Callable[[dict[str, Any]], bool], what: str
) -> None:
    """Until `cond` holds for the own status of every one of the three servers."""
    for _ in range(400):
        per = await pool.server_statuses()
        if all(s is not None and cond(s) for s in per.values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not on every server: {what}: {per}\n{pool.logs()}")


def _own(status: dict[str, Any], license: str) -> dict[str, Any] | None:
    for lic in status["licenses"]:
        if lic["license"] == license:
            row: dict[str, Any] | None = lic["servers"].get(status["id"])
            return row
    return None


def _hard_limit(status: dict[str, Any], license: str) -> int | None:
    for lic in status["licenses"]:
        if lic["license"] == license:
            limit: int | None = lic["hard_limit"]
            return limit
    return None


async def test_every_action_through_the_ui_reaches_every_server(
    live_pool: Any, wait_until: Until, tmp_path: Any
) -> None:
    from lm_core.engine.rlf import with_distribution

    new_rlf = with_distribution(live_pool.rlf, APP, {"A": 50, "B": 25, "C": 25})
    push_file = tmp_path / "next.rlf"
    push_file.write_text(live_pool.signed_text(new_rlf))
    app = live_app(live_pool, push_path=str(push_file))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app._leader == live_pool.leader, "the leader")

        # Push RLF: diff shown, Enter confirms, every server runs the new sequence.
        await pilot.press("u")
        screen = app.screen
        assert isinstance(screen, PushScreen)
        assert screen.loaded is not None
        assert screen.loaded.error is None
        assert "+A = 50" in screen.loaded.diff
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(a == "push_rlf" for a, _ in app.outcomes), "push")
        assert app.outcomes[-1][1].ok, app.outcomes
        seq = new_rlf.sequence
        assert seq == live_pool.rlf.sequence + 1
        assert app.outcomes[-1][1].per_server == dict.fromkeys("ABC", f"seq {seq}")
        await _server_statuses_until(live_pool, lambda s: s["rlf_seq"] == seq, f"RLF seq {seq}")
        progress = screen.query_one("#progress", DataTable)
        assert progress.row_count == 3
        await pilot.press("escape")

        # Change distribution: A 50 -> 40 (free pool 10), on every server.
        await wait_until(
            pilot,
            lambda: app._views and app._views[0].rows[0].distribution == 50,
            "the app shows the pushed distribution",
        )
        await pilot.press("d")
        assert isinstance(app.screen, DistributionScreen)
        await pilot.press("4", "0", "enter")
        await wait_until(pilot, lambda: app.outcomes[-1][0] == "set_distribution", "dist")
        assert app.outcomes[-1][1].ok, app.outcomes
        want = {"A": 40, "B": 25, "C": 25}
        await _server_statuses_until(
            live_pool,
            lambda s: (_own(s, APP) or {}).get("distribution") == want[s["id"]],
            "distribution A:40 B:25 C:25",
        )

        # Add allocations: +20 seats of Application 1.0 on every server.
        await pilot.press("l")
        assert isinstance(app.screen, CodeScreen)
        app.screen.query_one("#code", TextArea).text = live_pool.issue(seats=20, kind="add")
        await pilot.pause()
        await pilot.click("#ok")
        await wait_until(pilot, lambda: app.outcomes[-1][0] == "add_allocations", "add alloc")
        assert app.outcomes[-1][1].ok, app.outcomes
        await _server_statuses_until(
            live_pool, lambda s: _hard_limit(s, APP) == 120, "hard limit 120"
        )

        # Add a license code: a new product appears on every server.
        await pilot.press("a")
        assert isinstance(app.screen, CodeScreen)
        app.screen.query_one("#code", TextArea).text = live_pool.issue(seats=10, product="Viewer")
        await pilot.pause()
        await pilot.click("#ok")
        await wait_until(pilot, lambda: app.outcomes[-1][0] == "add_code", "add code")
        assert app.outcomes[-1][1].ok, app.outcomes
        await _server_statuses_until(
            live_pool, lambda s: _hard_limit(s, "Viewer 1.0") == 10, "Viewer 1.0 known"
        )
        await wait_until(pilot, lambda: "Viewer 1.0" in app._panels, "a panel for Viewer 1.0")


async def test_refusals_send_nothing(live_pool: Any, wait_until: Until) -> None:
    """An invalid sum never leaves the modal; read-only refuses every action."""
    before = await live_pool.wait_for(lambda s: True, "a status")
    version = {s["id"]: s["config_version"] for s in before["servers"]}
    app = live_app(live_pool)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app._leader == live_pool.leader, "the leader")
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, DistributionScreen)
        await pilot.press("9", "9", "enter")  # 99 + 30 + 30 > 100
        assert app.screen is screen
        assert screen.query_one("#ok", Button).disabled
        await pilot.press("escape")
        assert app.outcomes == []
    ro = live_app(live_pool, read_only=True)
    async with ro.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: ro._leader == live_pool.leader, "the leader")
        for key in ("a", "l", "d", "u", "r"):
            await pilot.press(key)
            assert not isinstance(ro.screen, (CodeScreen, DistributionScreen, PushScreen))
        assert ro.outcomes == []
    after = await live_pool.wait_for(lambda s: True, "a status")
    assert {s["id"]: s["config_version"] for s in after["servers"]} == version
