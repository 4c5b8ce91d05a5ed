"""The console's pool-status fixtures are recorded from the engine, not written by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

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
    assert sorted(fresh) == ["fig8.json", "fig9_after_a_died.json", "no_majority.json"]
    for name, text in fresh.items():
        on_disk = (FIXTURES / name).read_text(encoding="utf-8")
        assert on_disk == text, f"{name} differs: run .venv/bin/python tests/tui/fixtures/record.py"
