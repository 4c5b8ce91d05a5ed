"""`lm-daemon`'s budget options reach the listener's `Budgets`; the rest keep their
defaults."""

from __future__ import annotations

import pytest

from lm_core.runtime.connection import Budgets
from lm_core.runtime.localpool import FLEET_BUDGETS
from lm_core.runtime.startup import _parser, budgets

BASE = ["--rlf", "pool.rlf", "--server-id", "A", "--data-dir", "d", "--insecure-loopback"]


def test_defaults_are_the_budgets_defaults() -> None:
    assert budgets(_parser().parse_args(BASE)) == Budgets()


def test_each_option_sets_its_budget() -> None:
    options = [
        "--max-clients", "9",
        "--max-clients-per-source", "8",
        "--max-handshakes-per-source", "7",
        "--max-handshake-rate", "6",
    ]  # fmt: skip
    args = _parser().parse_args([*BASE, *options])
    assert budgets(args) == Budgets(
        clients=9, clients_per_source=8, handshakes_per_source=7, handshake_rate=6
    )


def test_fleet_budgets_parse() -> None:
    b = budgets(_parser().parse_args([*BASE, *FLEET_BUDGETS]))
    assert b.handshakes_per_source == b.handshakes
    assert b.handshake_rate > Budgets().handshake_rate


@pytest.mark.parametrize("bad", ["0", "-1", "x", "²"])
def test_a_rate_that_is_not_a_positive_integer_is_refused(bad: str) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args([*BASE, "--max-handshake-rate", bad])
    assert exc.value.code == 2
