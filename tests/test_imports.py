"""Import contracts: the engine is pure, the core is headless, the front ends are apart.

The engine check is absolute and runs in a fresh interpreter: it imports every module of
`lm_core.engine` and fails if

* a forbidden module (or a submodule of one) is in `sys.modules` afterwards and was not
  already there when the interpreter started;
* any engine module holds a forbidden module, or a name taken from one, as a global
  (`import time`, `from time import monotonic`, `_rng = random.Random()`); or
* any engine source file imports a forbidden module anywhere, a function body included,
  or imports dynamically (`importlib`, `__import__`): these run only when called, so the
  first two checks cannot see them.

Why three: CPython itself loads `time` before running any code (and `datetime`, which the
engine needs for dates, imports it too), so "`time` is not in `sys.modules`" can never
hold and says nothing; whether the engine *uses* `time` is what the second and third
checks decide. ruff's banned-API rule (TID251, pyproject.toml) says the same at lint time.
`test_the_engine_guard_fails_on_a_forbidden_import` breaks a copy of the engine and shows
that every one of these guards reports it.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN_IN_ENGINE = (
    "asyncio", "socket", "ssl", "sqlite3", "time", "random", "selectors", "threading",
    "subprocess", "textual", "typer", "rich", "lm_core.runtime", "lm_cli", "lm_tui",
)  # fmt: skip
DYNAMIC_IMPORT = ("importlib", "__import__")

_CHECK = r"""
import importlib, json, pkgutil, sys, types
forbidden, root = json.loads(sys.argv[1]), sys.argv[2]
sys.path.insert(0, root)
at_start = set(sys.modules)

def bad(name):
    return isinstance(name, str) and any(name == f or name.startswith(f + ".") for f in forbidden)

pkg = importlib.import_module("lm_core.engine")
names = [pkg.__name__] + [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
mods = [importlib.import_module(n) for n in sorted(names)]
held = []
for mod in mods:
    for key, value in sorted(vars(mod).items()):
        origin = value.__name__ if isinstance(value, types.ModuleType) else getattr(
            value, "__module__", None)
        if bad(origin):
            held.append(f"{mod.__name__}.{key} is from {origin}")
print(json.dumps({
    "files": [m.__file__ for m in mods],
    "loaded": sorted(n for n in sys.modules if bad(n) and n not in at_start),
    "held": held,
}))
"""


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Name) and node.id == "__import__":
            out.append((node.lineno, "__import__"))
    return out


def _matches(name: str, banned: tuple[str, ...]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


def engine_violations(root: Path) -> list[str]:
    """Every way the engine under `root` (a directory holding `lm_core/`) reaches for
    a forbidden module; empty when it is pure."""
    engine = root / "lm_core" / "engine"
    found: list[str] = []
    for path in sorted(engine.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name in _imports(tree):
            if _matches(name, FORBIDDEN_IN_ENGINE + DYNAMIC_IMPORT):
                found.append(f"{path.relative_to(root)}:{line}: imports {name}")
    out = subprocess.run(
        [sys.executable, "-c", _CHECK, json.dumps(FORBIDDEN_IN_ENGINE), str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    # The fresh interpreter must have imported this engine, not another copy.
    assert result["files"], "no engine module was imported"
    for file in result["files"]:
        assert Path(file).resolve().is_relative_to(engine.resolve()), file
    found += [f"loaded {name}" for name in result["loaded"]]
    found += result["held"]
    return found


def _modules_after_import(module: str) -> set[str]:
    code = (
        "import sys, json, importlib, pkgutil\n"
        f"pkg = importlib.import_module({module!r})\n"
        "for m in pkgutil.walk_packages(getattr(pkg, '__path__', []), pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout))


def _loaded(forbidden: set[str], loaded: set[str]) -> set[str]:
    return {m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")}


def test_engine_imports_no_io() -> None:
    assert engine_violations(ROOT) == []


def _ruff(cwd: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    ruff = Path(sys.executable).parent / "ruff"
    return subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "TID251", *paths],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def test_the_engine_guard_fails_on_a_forbidden_import(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "lm_core", tmp_path / "lm_core", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert engine_violations(tmp_path) == []
    assert _ruff(tmp_path, "lm_core").returncode == 0

    tables = tmp_path / "lm_core" / "engine" / "tables.py"
    text = tables.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    assert sep
    tables.write_text(head + sep + "import time\n" + rest, encoding="utf-8")

    found = engine_violations(tmp_path)
    assert any(v.startswith("lm_core/engine/tables.py:") and "imports time" in v for v in found)
    assert "lm_core.engine.tables.time is from time" in found
    lint = _ruff(tmp_path, "lm_core")
    assert lint.returncode == 1
    assert "TID251" in lint.stdout
    assert "tables.py" in lint.stdout


def test_the_engine_guard_sees_imports_inside_functions(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "lm_core", tmp_path / "lm_core", ignore=shutil.ignore_patterns("*.pyc"))
    keys = tmp_path / "lm_core" / "engine" / "keys.py"
    keys.write_text(
        keys.read_text(encoding="utf-8") + "\n\ndef _later():\n    import random\n",
        encoding="utf-8",
    )
    found = engine_violations(tmp_path)
    assert [v for v in found if "imports random" in v]


def test_the_ban_is_scoped_to_the_engine() -> None:
    # The runtime may use time and asyncio: ruff's TID251 must not flag it.
    assert _ruff(ROOT, "lm_core/runtime", "lm_cli", "lm_tui").returncode == 0


@pytest.mark.parametrize(("front", "other"), [("lm_cli", "lm_tui"), ("lm_tui", "lm_cli")])
def test_front_ends_do_not_import_each_other(front: str, other: str) -> None:
    loaded = _modules_after_import(front)
    assert _loaded({other}, loaded) == set()


def test_core_runtime_is_headless() -> None:
    loaded = _modules_after_import("lm_core")
    assert _loaded({"textual", "typer", "rich"}, loaded) == set()
