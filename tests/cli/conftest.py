"""CLI test helpers: the `lm` app run in-process, a runner, and a temp working folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from lm_cli.main import app as APP


class Lm:
    """Runs `lm ARGS` in-process and keeps the last result."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> Result:
        result = self.runner.invoke(APP, list(args), input=stdin, catch_exceptions=False)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        if code == 2:
            # one line on stderr, no traceback
            assert result.stderr.count("\n") == 1, result.stderr
            assert result.stderr.startswith("error: ")
            assert "Traceback" not in result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def lm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lm:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LM_POOL", raising=False)
    return Lm()


@pytest.fixture
def pool(lm: Lm) -> tuple[Lm, str]:
    """A signed three-server pool.rlf with one acme code (A:40 B:30 C:30); returns the code."""
    lm("vendor", "keygen", "--out", "acme")
    lm("admin", "keygen", "--out", "admin")
    code = lm(
        "code", "issue", "--key", "acme.key", "--vendor", "acme", "--product", "Application",
        "--version", "1.0", "--seats", "100", "--expires", "2099-12-31",
    ).stdout.strip()  # fmt: skip
    lm(
        "rlf", "new", "pool.rlf", "--name", "eng", "--server", "A=127.0.0.1:27001",
        "--server", "B=127.0.0.1:27002", "--server", "C=127.0.0.1:27003",
        "--admin-key", "admin.pub", "--vendor", "acme=acme.pub",
    )  # fmt: skip
    lm("rlf", "add-code", "pool.rlf", code, "--dist", "A:40,B:30,C:30")
    lm("rlf", "sign", "pool.rlf", "--key", "admin.key")
    return lm, code
