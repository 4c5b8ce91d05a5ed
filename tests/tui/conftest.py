"""Shared helpers of the console's tests: recorded fixtures, a deterministic app factory.

Snapshot and view tests are fed recorded pool statuses (tests/tui/fixtures/*.json,
hand-written to the "Pool status" contract), never live daemons; the clocks are fixed and
TZ is pinned so every render is the same on every machine.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

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
