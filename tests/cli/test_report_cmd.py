"""`lm report`: bad input is one line and exit 2 before any server is asked; a pool
nobody answers is exit 1 naming why. (The report's numbers on real daemons:
tests/integration/test_usage_report.py.)"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from lm_cli.main import app as APP
from lm_cli.report_cmd import parse_when
from lm_core.errors import InputError

from .conftest import Lm

NOW = 1_800_000_000.0


def _utc(*parts: int) -> float:
    return datetime.datetime(*parts, tzinfo=datetime.UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("now", NOW),
        ("90m", NOW - 5400),
        ("12h", NOW - 43_200),
        ("7d", NOW - 7 * 86_400),
        ("2w", NOW - 14 * 86_400),
        ("@1700000000.5", 1_700_000_000.5),
        ("2026-11-29", _utc(2026, 11, 29)),
        ("2026-11-29T08:00Z", _utc(2026, 11, 29, 8)),
        ("2026-11-29T08:00", _utc(2026, 11, 29, 8)),  # UTC unless it says
        ("2026-11-29T09:00+01:00", _utc(2026, 11, 29, 8)),
    ],
)
def test_times(text: str, want: float) -> None:
    assert parse_when(text, option="--since", now=NOW) == want


def test_a_bad_time_names_the_option() -> None:
    with pytest.raises(InputError, match="not a time") as err:
        parse_when("yesterday", option="--until", now=NOW)
    assert err.value.field == "--until"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "last tuesday"], "--since"),
        (["--by", "week"], "--by: must be day or hour"),
        (["--since", "1d", "--until", "2d"], "--until must be after --since"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    pool: tuple[Lm, str], args: list[str], says: str
) -> None:
    lm, _ = pool
    result = lm("report", "--pool", "pool.rlf", *args, code=2)
    assert says in result.stderr


def test_json_and_csv_together_is_a_json_error(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    result = lm.runner.invoke(APP, ["report", "--pool", "pool.rlf", "--json", "--csv"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["field"] == "--csv"


def test_a_pool_nobody_answers_is_exit_1(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    result = lm("report", "--pool", "pool.rlf", "--timeout", "0.2", code=1)
    assert "no usage log could be read" in result.stderr


def test_retention_is_set_in_the_rlf(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    lm("rlf", "set", "pool.rlf", "--retention-days", "30")
    assert "retention_days = 30" in Path("pool.rlf").read_text(encoding="utf-8")
    result = lm("rlf", "set", "pool.rlf", "--retention-days", "0", code=2)
    assert "retention_days: must be a whole number of days 1..36500" in result.stderr
