"""The console's pool-status fixtures are recorded from the engine, not written by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from lm_core.engine.vocab import EventKind

FIXTURES = Path(__file__).parent / "fixtures"


def _recorder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("record_fixtures", FIXTURES / "record.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixtures_are_recorded() -> None:
    fresh: dict[str, str] = _recorder().record()
    assert sorted(fresh) == [
        "busy_pool.json",
        "fig8.json",
        "fig9_after_a_died.json",
        "no_majority.json",
    ]
    for name, text in fresh.items():
        on_disk = (FIXTURES / name).read_text(encoding="utf-8")
        assert on_disk == text, f"{name} differs: run .venv/bin/python tests/tui/fixtures/record.py"


def test_fixtures_speak_the_engines_words() -> None:
    """Every event kind in a fixture is one the engine emits; the busy pool is busy."""
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name == "codes.json":
            continue
        status = json.loads(path.read_text(encoding="utf-8"))
        assert {e["kind"] for e in status["events"]} <= set(EventKind), path.name
    busy = json.loads((FIXTURES / "busy_pool.json").read_text(encoding="utf-8"))
    kinds = {e["kind"] for e in busy["events"]}
    assert {"admin", "borrow", "reclaim", "push", "sync"} <= kinds
    assert len(busy["licenses"]) == 3
    assert {c["server"] for c in busy["clients"]} == {"A", "B", "C"}
    assert any(c["count"] == 2 for c in busy["clients"])
