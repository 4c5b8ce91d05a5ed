"""Import contracts: the engine is pure, the core is headless, the front ends are apart."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN_IN_ENGINE = {
    "asyncio", "socket", "ssl", "sqlite3", "time", "random", "selectors", "threading",
    "subprocess", "textual", "typer", "rich", "lm_core.runtime", "lm_cli", "lm_tui",
}  # fmt: skip


def _modules_after_import(module: str) -> set[str]:
    code = (
        "import sys, json, importlib, pkgutil\n"
        f"pkg = importlib.import_module({module!r})\n"
        "for m in pkgutil.walk_packages(getattr(pkg, '__path__', []), pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-X", "frozen_modules=off", "-c", code],
        check=True,
        capture_output=True,
        text=True,
    )
    return set(json.loads(out.stdout))


def _loaded(forbidden: set[str], loaded: set[str]) -> set[str]:
    return {m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")}


def test_engine_imports_no_io() -> None:
    # Python's own start-up may preload some stdlib modules; compare with a bare interpreter.
    baseline = _modules_after_import("json")
    loaded = _modules_after_import("lm_core.engine") - baseline
    assert _loaded(FORBIDDEN_IN_ENGINE, loaded) == set()


@pytest.mark.parametrize(("front", "other"), [("lm_cli", "lm_tui"), ("lm_tui", "lm_cli")])
def test_front_ends_do_not_import_each_other(front: str, other: str) -> None:
    loaded = _modules_after_import(front)
    assert _loaded({other}, loaded) == set()


def test_core_runtime_is_headless() -> None:
    loaded = _modules_after_import("lm_core")
    assert _loaded({"textual", "typer", "rich"}, loaded) == set()
