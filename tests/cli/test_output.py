"""Shared CLI helpers: error mapping, --pool/LM_POOL, atomic writes, distributions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lm_cli.output import handle_errors, load_pool, parse_dist, write_atomic
from lm_cli.rlf_cmd import rlf_app
from lm_core.errors import InputError, RefusedError, RlfError, SignatureError

SAMPLES = Path(__file__).resolve().parents[2] / "sample_rlfs"


def _app(exc: BaseException | None) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def run(name: str = "x") -> None:
        """Example: run"""
        if exc is not None:
            raise exc
        print(f"hello {name}")

    @app.command()
    def other() -> None: ...

    return app


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (None, 0, ""),
        (RlfError("bad\nthing", file="p.rlf", line=3, field="pool"), 2,
         "error: p.rlf:3: pool: bad thing\n"),
        (SignatureError("admin signature does not verify"), 2,
         "error: admin signature does not verify\n"),
        (RefusedError("no majority"), 1, "error: no majority\n"),
    ],
)  # fmt: skip
def test_handle_errors_maps_exit_codes(exc: BaseException | None, code: int, line: str) -> None:
    result = CliRunner().invoke(_app(exc), ["run", "--name", "y"])
    assert result.exit_code == code
    assert result.stderr == line
    assert "Traceback" not in result.output


def test_handle_errors_lets_bugs_through() -> None:
    result = CliRunner().invoke(_app(ValueError("bug")), ["run"])
    assert isinstance(result.exception, ValueError)


def test_load_pool_from_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    patent = SAMPLES / "patent.rlf"
    assert load_pool(patent).pool == "patent"
    monkeypatch.setenv("LM_POOL", str(patent))
    assert load_pool(None).pool == "patent"
    monkeypatch.delenv("LM_POOL")
    with pytest.raises(InputError, match="LM_POOL"):
        load_pool(None)
    with pytest.raises(SignatureError, match="admin signature does not verify"):
        load_pool(SAMPLES / "bad" / "tampered_body.rlf")
    assert load_pool(SAMPLES / "bad" / "tampered_body.rlf", verify=False).pool == "patent"


def test_write_atomic_modes_and_no_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "k.key"
    write_atomic(target, "one\n", private=True)
    write_atomic(target, "two\n", private=True)
    assert target.read_text() == "two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    public = tmp_path / "k.pub"
    write_atomic(public, "x")
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key", "k.pub"]
    with pytest.raises(InputError, match="cannot write"):
        write_atomic(tmp_path / "missing" / "f", "x")


def test_parse_dist() -> None:
    assert parse_dist(" A:40, B=30 ,C:30,") == {"A": 40, "B": 30, "C": 30}
    with pytest.raises(InputError, match="twice"):
        parse_dist("A:1,A:2")
    with pytest.raises(InputError, match="empty"):
        parse_dist(",")


def test_rlf_app_is_exported_for_other_modules() -> None:
    names = {c.name for c in rlf_app.registered_commands}
    assert {"new", "add-code", "set-dist", "sign", "verify", "show"} <= names


def test_main_app_wires_the_rlf_commands() -> None:
    from lm_cli.main import app

    result = CliRunner().invoke(app, ["rlf", "--help"])
    assert result.exit_code == 0
    for command in ("new", "add-code", "set-dist", "sign", "verify", "show"):
        assert command in result.stdout
