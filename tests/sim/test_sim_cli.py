"""`lm sim`: one seed with a trace, many seeds with a summary, scripted scenarios."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lm_cli.main import app

runner = CliRunner()


def test_one_seed_prints_config_events_and_verdict() -> None:
    res = runner.invoke(
        app, ["sim", "--seed", "2", "--servers", "3", "--clients", "10", "--minutes", "5"]
    )
    assert res.exit_code == 0, res.output
    assert "seed 2: 3 servers, 10 clients" in res.output
    assert "seed 2: ok" in res.output
    assert " role " in res.output  # notable events are listed


def test_same_seed_same_run() -> None:
    args = ["sim", "--seed", "7", "--servers", "3-5", "--clients", "10-20", "--minutes", "4",
            "--l2", "measure", "--json"]  # fmt: skip
    a = json.loads(runner.invoke(app, args).output)
    b = json.loads(runner.invoke(app, args).output)
    assert a["ok"]
    assert a == b


def test_many_seeds_summary(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "sim",
            "--seeds",
            "3",
            "--servers",
            "3",
            "--clients",
            "10",
            "--minutes",
            "3",
            "--workers",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["seeds"] == 3
    assert s["passed"] == 3
    assert s["failed_seeds"] == []


def test_bad_input_is_one_line_and_exit_2() -> None:
    for args in (
        ["sim"],
        ["sim", "--seed", "1", "--seeds", "2"],
        ["sim", "--seed", "1", "--servers", "5-3"],
        ["sim", "--seed", "1", "--clients", "many"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output


def test_script_runs_and_a_false_expectation_exits_1(tmp_path: Path) -> None:
    good = tmp_path / "good.lms"
    good.write_text("pool servers=A,B,C seats=10\nat 0 start A B C\nat 8 expect role A leader\n")
    res = runner.invoke(app, ["sim", "--script", str(good)])
    assert res.exit_code == 0, res.output
    assert "1 expectations hold" in res.output
    bad = tmp_path / "bad.lms"
    bad.write_text("pool servers=A,B,C seats=10\nat 0 start A B C\nat 8 expect role B leader\n")
    res = runner.invoke(app, ["sim", "--script", str(bad)])
    assert res.exit_code == 1
    assert "scenario line 3" in res.output
    missing = runner.invoke(app, ["sim", "--script", str(tmp_path / "nope.lms")])
    assert missing.exit_code == 2


def test_l2_figures_in_the_summary_and_one_seed() -> None:
    # Seed 1 draws a loaded pool: L2 is judged and its figures are printed.
    args = ["sim", "--seed", "1", "--minutes", "5", "--l2", "measure"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "loaded:" in res.output
    assert "L2 (bound" in res.output
    assert "faults judged" in res.output
    res = runner.invoke(
        app, ["sim", "--seeds", "4", "--minutes", "5", "--workers", "1", "--l2", "measure",
              "--json"],
    )  # fmt: skip
    s = json.loads(res.output)
    assert s["l2"]["loaded_seeds"] >= 1
    assert s["l2"]["windows"] >= 1
    assert s["l2"]["affected"] >= s["l2"]["reseated"]
    res = runner.invoke(app, ["sim", "--seeds", "2", "--minutes", "3", "--l2", "off",
                              "--workers", "1"])  # fmt: skip
    assert "L2: loaded seeds / seeds judged" in res.output
    bad = runner.invoke(app, ["sim", "--seed", "1", "--l2", "maybe"])
    assert bad.exit_code == 2
    assert "--l2" in bad.output
