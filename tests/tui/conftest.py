"""Shared helpers of the console's tests: recorded fixtures, a deterministic app factory.

Snapshot and view tests are fed recorded pool statuses (tests/tui/fixtures/*.json: the
patent's example, and a busy day on the same pool, run through the engine by
fixtures/record.py), never live daemons; the clocks are fixed and TZ is pinned so every
render is the same on every machine.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from lm_core.runtime.localpool import (
    FAST_TIMING,
    LocalPool,
    PoolKeys,
    console_command,
    write_pool,
    year_code,
)
from lm_tui.app import LmTuiApp
from lm_tui.source import RecordedSource

os.environ["TZ"] = "UTC"
time.tzset()

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]
WALL = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.UTC).timestamp()
SIZE = (120, 40)


def load_fixture(name: str) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data if isinstance(data, list) else [data]


@pytest.fixture
def fixture_status() -> Callable[[str], list[dict[str, Any]]]:
    return load_fixture


@pytest.fixture
def patent_rlf_text() -> str:
    return (ROOT / "sample_rlfs" / "patent.rlf").read_text(encoding="utf-8")


@pytest.fixture
def recorded_app(patent_rlf_text: str) -> Callable[..., LmTuiApp]:
    """Factory: an app replaying the named fixtures (one status per poll), no polling
    timer (space polls again), fixed clocks, no cursor blink."""

    def make(*names: str, read_only: bool = False, **kwargs: Any) -> LmTuiApp:
        snapshots = [s for name in names for s in load_fixture(name)]
        source = RecordedSource(snapshots)
        return LmTuiApp(
            source,
            pool_name=snapshots[0]["pool"],
            rlf_text=kwargs.pop("rlf_text", patent_rlf_text),
            read_only=read_only,
            interval=None,
            clock=lambda: 100.0,
            wall_clock=lambda: WALL,
            blink=False,
            **kwargs,
        )

    return make


async def wait_ready(pilot: Pilot[Any], polls: int = 1) -> None:
    """Wait until the app has applied `polls` statuses (with a bound, never forever)."""
    app = pilot.app
    assert isinstance(app, LmTuiApp)
    for _ in range(200):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if app.polls >= polls and app.status is not None:
            await pilot.pause()
            return
    raise AssertionError(f"app applied {app.polls} statuses, wanted {polls}")


@pytest.fixture
def ready() -> Callable[[Pilot[Any]], Awaitable[None]]:
    return wait_ready


# ---------------------------------------------------------------- real daemons


class LivePool(LocalPool):
    """Three real `lm-daemon` processes on 127.0.0.1 with TLS from the runtime's PKI,
    a freshly generated pool (admin and vendor keys, one code of 100 seats, A:40 B:30
    C:30, fast timings). Every process is killed at teardown."""

    def __init__(self, root: Path) -> None:
        keys = PoolKeys.generate()
        files = write_pool(
            root,
            "ABC",
            name="tuitest",
            keys=keys,
            seats=100,
            serial=f"T{time.monotonic_ns()}",
            dist={"A": 40, "B": 30, "C": 30},
            timing=FAST_TIMING,
        )
        super().__init__(root, files.rlf, files.rlf_path, files.tls_dir, stop_grace=0.0)
        self.admin_private = keys.admin_private
        self.vendor_private = keys.vendor_private
        self.rlf_text = files.rlf_path.read_text(encoding="utf-8")
        self.leader: str | None = None

    def issue(self, *, seats: int, kind: str = "base", product: str = "Application") -> str:
        return year_code(
            self.vendor_private,
            seats=seats,
            serial=f"T{time.monotonic_ns()}",
            product=product,
            kind=kind,
        )

    def signed_text(self, rlf: Any) -> str:
        from lm_core.engine.keys import load_private
        from lm_core.engine.rlf import render_rlf, sign_rlf

        return str(render_rlf(sign_rlf(rlf, load_private(self.admin_private))))

    async def wait_listening(self, sid: str, limit: float = 30.0) -> None:  # type: ignore[override]
        await self.wait_listening_async(sid, limit)

    def kill9(self, sid: str) -> None:
        self.kill(sid)

    def close(self) -> None:
        self.stop_all()

    def logs(self) -> str:
        return self.log_tail(25)

    def admin(self) -> Any:
        from lm_core.runtime.admin import AdminClient
        from lm_core.runtime.tlsconfig import load_tls_dir

        return AdminClient(self.rlf, tls=load_tls_dir(self.tls_dir, "admin"), timeout=1.0)

    def source(self) -> Any:
        from lm_core.runtime.tlsconfig import load_tls_dir
        from lm_tui.source import AdminSource

        return AdminSource(self.rlf, tls=load_tls_dir(self.tls_dir, "admin"), timeout=1.0)

    async def server_statuses(self) -> dict[str, dict[str, Any] | None]:
        """Each server's own status (None if it cannot be reached)."""
        client = self.admin()
        try:
            return {sid: await client.server_status(sid) for sid in "ABC"}
        finally:
            await client.aclose()

    async def wait_for(
        self, cond: Callable[[dict[str, Any]], bool], what: str, limit: float = 20.0
    ) -> dict[str, Any]:
        """Poll the merged status until `cond` holds (fails with the last status)."""
        import asyncio

        client = self.admin()
        last: dict[str, Any] = {}
        deadline = time.monotonic() + limit
        try:
            while True:
                try:
                    last = await client.status()
                    if cond(last):
                        return last
                except Exception as exc:  # a server may be mid-restart
                    last = {"error": repr(exc)}
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"timed out waiting for {what}: {json.dumps(last)[:3000]}\n{self.logs()}"
                    )
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def lm_status_json(self) -> dict[str, Any]:
        out = subprocess.run(
            [
                *console_command("lm", "lm_cli.main:main"),
                "status",
                "--json",
                "--pool",
                str(self.rlf_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, LM_TLS_DIR=str(self.tls_dir)),
        )
        assert out.returncode == 0, out.stderr
        data: dict[str, Any] = json.loads(out.stdout)
        return data


@pytest.fixture
async def live_pool(tmp_path: Path) -> Any:
    pool = LivePool(tmp_path)
    try:
        for sid in "ABC":  # A first, listening before the others start: it should lead
            pool.start(sid)
            await pool.wait_listening(sid)
        status = await pool.wait_for(
            lambda s: (
                s["leader"] is not None
                and s["majority"]["ok"]
                and all(x["up"] for x in s["servers"])
            ),
            "a leader with all three up",
        )
        pool.leader = status["leader"]
        yield pool
    finally:
        pool.close()


async def until(
    pilot: Pilot[Any], cond: Callable[[], bool], what: str, limit: float = 20.0
) -> None:
    """Let the app run until `cond()` holds (bounded)."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            app = pilot.app
            raise AssertionError(
                f"timed out waiting for {what}; app status: "
                f"{json.dumps(getattr(app, 'status', None))[:3000]}"
            )
        await pilot.pause(0.05)


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    return until
