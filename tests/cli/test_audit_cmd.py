"""`lm audit`'s pure parts: --since, and merging servers' rows into changes."""

from __future__ import annotations

import datetime

import pytest
from typer.testing import CliRunner

from lm_cli.audit_cmd import changes, parse_since
from lm_cli.main import app
from lm_core.errors import InputError

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("30m", "2026-11-29T11:30:00.000Z"),
        ("2h", "2026-11-29T10:00:00.000Z"),
        ("7d", "2026-11-22T12:00:00.000Z"),
        ("2026-11-01", "2026-11-01T00:00:00.000Z"),
        ("2026-11-01T14:30", "2026-11-01T14:30:00.000Z"),
        ("2026-11-01T14:30:00+01:00", "2026-11-01T13:30:00.000Z"),
    ],
)
def test_since(text: str, want: str) -> None:
    assert parse_since(text, NOW) == want


def test_bad_since_is_exit_2() -> None:
    with pytest.raises(InputError):
        parse_since("yesterday", NOW)
    out = CliRunner().invoke(app, ["audit", "--since", "yesterday", "--pool", "x.rlf"])
    assert out.exit_code == 2
    assert "--since" in out.output


def row(seq: int, op: str, cfg: int, at: str) -> dict[str, object]:
    return {
        "seq": seq,
        "at": at,
        "op": op,
        "actor": "admin:a",
        "reason": "r",
        "what": "w",
        "rlf_seq": 1,
        "cfg_term": 1,
        "cfg_version": cfg,
        "before": {},
        "after": {},
    }


def test_one_change_per_config_version_with_its_servers() -> None:
    per = {
        "A": {"rows": [row(1, "set_distribution", 2, "2026-01-01T00:00:01.000Z")]},
        "B": {
            "rows": [
                row(1, "set_distribution", 2, "2026-01-01T00:00:00.500Z"),
                row(2, "reclaim", 2, "2026-01-02T00:00:00.000Z"),
            ]
        },
        "C": {"error": "unreachable: x"},
    }
    got = changes(per, None)
    assert [(c["op"], c["servers"]) for c in got] == [
        ("set_distribution", {"A": 1, "B": 1}),
        ("reclaim", {"B": 2}),
    ]
    assert got[0]["at"] == "2026-01-01T00:00:00.500Z"  # the earliest server's time
    assert [c["op"] for c in changes(per, "2026-01-01T12:00:00.000Z")] == ["reclaim"]
