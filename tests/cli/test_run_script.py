"""`./run lm ...` works in the caller's folder: relative paths are the caller's, never the
repository's (a private key must not land in the work tree)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_run_lm_resolves_paths_against_the_callers_folder(tmp_path: Path) -> None:
    installed = REPO / ".venv" / ".installed"
    if (
        not installed.exists()
        or (REPO / "pyproject.toml").stat().st_mtime > installed.stat().st_mtime
    ):
        pytest.skip("./run would (re)install .venv first; run `./run test` once to set it up")
    before = set(REPO.iterdir())
    done = subprocess.run(
        [str(REPO / "run"), "lm", "vendor", "keygen", "--out", "acme"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "acme.key").exists()
    assert (tmp_path / "acme.pub").exists()
    assert set(REPO.iterdir()) == before
    version = subprocess.run(
        [str(REPO / "run"), "lm-daemon", "--version"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert version.returncode == 0
    assert version.stdout.startswith("lm-daemon ")
