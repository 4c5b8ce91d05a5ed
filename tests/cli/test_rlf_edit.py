"""`lm rlf bump|add-server|remove-server|move-server|set` on a real file; `--json` errors;
`--version` and completion of the real `lm` app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lm_cli.main import app
from lm_core.engine.rlf import parse_rlf, verify_rlf

from .conftest import Lm


def test_bump_then_sign_gives_a_pushable_sequence(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    before = parse_rlf(Path("pool.rlf").read_text())
    out = lm("rlf", "bump", "pool.rlf")
    assert f"sequence {before.sequence} -> {before.sequence + 1}" in out.stdout
    bumped = parse_rlf(Path("pool.rlf").read_text())
    assert bumped.sequence == before.sequence + 1
    assert bumped.signature is None
    assert bumped.codes == before.codes
    lm("rlf", "sign", "pool.rlf", "--key", "admin.key")
    verify_rlf(parse_rlf(Path("pool.rlf").read_text()))


def test_add_move_remove_server(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    seq = parse_rlf(Path("pool.rlf").read_text()).sequence
    lm("rlf", "add-server", "pool.rlf", "D=127.0.0.1:27004", "--position", "2")
    rlf = parse_rlf(Path("pool.rlf").read_text())
    assert rlf.server_ids == ("A", "D", "B", "C")
    assert rlf.sequence == seq + 1
    lm("rlf", "move-server", "pool.rlf", "C", "--position", "1")
    assert parse_rlf(Path("pool.rlf").read_text()).server_ids == ("C", "A", "D", "B")
    out = lm("rlf", "remove-server", "pool.rlf", "A")
    assert "40 seat(s) of its distribution go to the free pool" in out.stdout
    rlf = parse_rlf(Path("pool.rlf").read_text())
    assert rlf.server_ids == ("C", "D", "B")
    assert rlf.distribution["Application 1.0"] == {"B": 30, "C": 30}
    assert rlf.sequence == seq + 3
    lm("rlf", "sign", "pool.rlf", "--key", "admin.key")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add-server", "pool.rlf", "B=127.0.0.1:27009"), "server 'B' is already in the RLF"),
        (("add-server", "pool.rlf", "D=127.0.0.1:27001"), "pool.rlf: servers"),
        (("add-server", "pool.rlf", "D127"), "expected ID=HOST:PORT"),
        (("add-server", "pool.rlf", "D=h:1", "--position", "9"), "--position: must be 1 to 4"),
        (("remove-server", "pool.rlf", "Z"), "no server 'Z'"),
        (("remove-server", "pool.rlf", "C"), "pool.rlf: servers"),
        (("move-server", "pool.rlf", "A", "--position", "0"), "--position: must be 1 to 3"),
        (("set", "pool.rlf"), "nothing to set"),
        (("set", "pool.rlf", "--client-heartbeat", "60"), "timing.client_heartbeat"),
    ],
)
def test_edit_errors_are_one_line(
    pool: tuple[Lm, str], args: tuple[str, ...], message: str
) -> None:
    lm, _ = pool
    before = Path("pool.rlf").read_text()
    assert message in lm("rlf", *args, code=2).stderr
    assert Path("pool.rlf").read_text() == before


def test_set_threshold_majority_and_timings(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    lm("rlf", "set", "pool.rlf", "--borrowing-threshold", "0.9", "--no-majority-rule",
       "--client-lease", "10", "--leader-timeout", "3")  # fmt: skip
    rlf = parse_rlf(Path("pool.rlf").read_text())
    assert rlf.borrowing_threshold == 0.9
    assert rlf.majority_rule is False
    assert (rlf.timing.client_lease, rlf.timing.leader_timeout) == (10.0, 3.0)
    lm("rlf", "set", "pool.rlf", "--majority-rule")
    assert parse_rlf(Path("pool.rlf").read_text()).majority_rule is True


# ------------------------------------------------------------ the real `lm` app

RUNNER = CliRunner()


def test_json_errors_are_json_on_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LM_POOL", raising=False)
    result = RUNNER.invoke(app, ["rlf", "show", "missing.rlf", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "error": "RLF not found", "file": "missing.rlf", "line": None, "field": None,
    }  # fmt: skip
    result = RUNNER.invoke(app, ["status", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"].startswith("no pool given")
    Path("bad.rlf").write_text('pool = "eng"\nsequence = "x"\n')
    result = RUNNER.invoke(app, ["rlf", "verify", "bad.rlf", "--json"])
    assert result.exit_code == 2
    err = json.loads(result.stdout)
    assert (err["file"], err["field"]) == ("bad.rlf", "sequence")


def _lm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from lm_cli.main import main; main()", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip


def test_json_usage_errors_from_the_command_line(tmp_path: Path) -> None:
    out = _lm("status", "--json", "--timeout", "soon", cwd=tmp_path)
    assert out.returncode == 2
    err = json.loads(out.stdout)
    assert err["field"] == "--timeout"
    assert "Invalid value" in err["error"]
    assert _lm("rlf", "show", "--json", cwd=tmp_path).returncode == 2


def test_version_and_completion(tmp_path: Path) -> None:
    out = _lm("--version", cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout.startswith("lm ")
    assert "(lm-license-pool)" in out.stdout
    help_text = _lm("--help", cwd=tmp_path).stdout
    assert "--install-completion" in help_text
    assert "--show-completion" in help_text
    # Typer finds the shell in the process tree, which a CI runner may lack: name it
    # instead (Typer's own switch for that)
    shown = subprocess.run(
        [sys.executable, "-c", "from lm_cli.main import main; main()",
         "--show-completion", "bash"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SHELL": "/bin/bash", "HOME": str(tmp_path),
             "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "complete" in shown.stdout
