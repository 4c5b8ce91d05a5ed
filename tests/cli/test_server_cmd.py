"""`lm server drain|resume`: help with an example, and a server not in the pool is bad
input (exit 2, one line) before anything is sent."""

from __future__ import annotations

from pathlib import Path

from .conftest import Lm

PATENT = Path(__file__).parents[2] / "sample_rlfs" / "patent.rlf"


def test_help_shows_an_example(lm: Lm) -> None:
    for cmd in ("drain", "resume"):
        out = lm("server", cmd, "--help").stdout
        assert f"lm server {cmd} --pool pool.rlf B" in out


def test_an_unknown_server_is_bad_input(lm: Lm) -> None:
    err = lm("server", "drain", "Z", "--pool", str(PATENT), code=2).stderr
    assert "unknown server 'Z'" in err
    err = lm("server", "resume", "Z", "--pool", str(PATENT), code=2).stderr
    assert "unknown server 'Z'" in err
