"""`lm-tui` checks its input before the app starts: one line on stderr, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lm_tui import main as tui_main
from lm_tui.app import LmTuiApp

ROOT = Path(__file__).resolve().parents[2]
PATENT = ROOT / "sample_rlfs" / "patent.rlf"


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        tui_main.prepare(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def test_no_pool(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LM_POOL", raising=False)
    assert fails([], capsys) == "lm-tui: no pool: give --pool FILE or set LM_POOL"


def test_missing_pool_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.rlf"
    assert (
        fails(["--pool", str(missing)], capsys) == f"lm-tui: {missing}: No such file or directory"
    )


def test_bad_rlf_names_file_and_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.rlf"
    bad.write_text(PATENT.read_text().replace("sequence = 2", 'sequence = "two"'))
    err = fails(["--pool", str(bad)], capsys)
    assert err.startswith(f"lm-tui: {bad}:6:")
    assert "sequence" in err


def test_bad_tls_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = fails(["--pool", str(PATENT), "--tls-dir", str(tmp_path / "none")], capsys)
    assert "--tls-dir is not a directory" in err
    err = fails(["--pool", str(PATENT), "--tls-dir", str(tmp_path)], capsys)
    assert "ca.pem" in err


def test_bad_interval_and_unknown_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--interval: must be positive" in fails(
        ["--pool", str(PATENT), "--interval", "0"], capsys
    )
    assert "unrecognized arguments: --bogus" in fails(["--pool", str(PATENT), "--bogus"], capsys)


def test_pool_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LM_POOL", str(PATENT))
    monkeypatch.setenv("LM_TLS_DIR", "")
    app = tui_main.prepare(["--read-only"])
    assert isinstance(app, LmTuiApp)
    assert app.pool_name == "patent"
    assert app.read_only


def test_not_a_tty_is_refused_before_the_app_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from lm_tui.main import main; main()", "--pool", str(PATENT)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "lm-tui: needs an interactive terminal (stdin/stdout is not a TTY); "
        "use `lm status` in scripts"
    )


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        tui_main.prepare(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--pool" in out
    assert "LM_POOL" in out
    assert "example: lm-tui --pool pool.rlf" in out
