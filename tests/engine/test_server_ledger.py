"""The leader's ledger of allowances (tables.Ledger): the S1/S2 arithmetic in isolation."""

from __future__ import annotations

from lm_core.engine.messages import LicenseRow
from lm_core.engine.tables import Ledger, LicenseState

LIC = "L 1"
IDS = ("A", "B", "C")


def state(**rows: int) -> LicenseState:
    hard = 10
    return LicenseState(LIC, hard, "2099-12-31", hard - sum(rows.values()), dict(rows))


def row(allowed: int, in_use: int, distribution: int = 0) -> tuple[LicenseRow, ...]:
    return (LicenseRow(license=LIC, distribution=distribution, allowed=allowed, in_use=in_use),)


def test_unknown_server_blocks_every_raise_even_up_to_a_hold() -> None:
    ledger = Ledger("A", IDS)
    ledger.learn("B", 1, row(allowed=0, in_use=1))  # B's in-use may be a client counted elsewhere
    changed, short = ledger.rebalance(state(A=4, B=3, C=3), seq=2, up=IDS)
    assert ledger.get("B", LIC).sent == 0
    assert short
    assert changed == []
    ledger.fence("C")
    changed, short = ledger.rebalance(state(A=4, B=3, C=3), seq=3, up=("A", "B"))
    assert ledger.get("B", LIC).sent == 3
    assert "B" in changed


def test_overcommitted_pool_raises_nobody() -> None:
    ledger = Ledger("A", IDS)
    ledger.learn("B", 1, row(allowed=2, in_use=6))
    ledger.learn("C", 1, row(allowed=2, in_use=5))
    ledger.set_self_in_use(LIC, 0)
    ledger.rebalance(state(A=4, B=3, C=3), seq=2, up=IDS)
    assert ledger.usable(LIC, 10) == 10 - (0 + 6 + 5)  # holds: A 0, B 6, C 5
    assert ledger.get("A", LIC).sent == 0
    assert ledger.get("B", LIC).sent == 2


def test_decrease_counts_until_acked_and_seats_move_only_then() -> None:
    ledger = Ledger("A", IDS)
    ledger.learn("B", 1, row(allowed=5, in_use=1))
    ledger.learn("C", 1, row(allowed=5, in_use=0))
    ledger.rebalance(state(A=0, B=5, C=5), seq=2, up=IDS)
    _changed, short = ledger.rebalance(state(A=3, B=2, C=5), seq=3, up=IDS)
    b = ledger.get("B", LIC)
    assert b.sent == 2
    assert b.hold(10) == 5  # B may still be using its old allowance
    assert ledger.get("A", LIC).sent == 0
    assert short
    ledger.learn("B", 2, row(allowed=5, in_use=1))  # an ACK of a heartbeat before the change
    ledger.rebalance(state(A=3, B=2, C=5), seq=4, up=IDS)
    assert ledger.get("A", LIC).sent == 0
    ledger.learn("B", 3, row(allowed=2, in_use=1))  # B applied the decrease
    _changed, short = ledger.rebalance(state(A=3, B=2, C=5), seq=4, up=IDS)
    assert ledger.get("A", LIC).sent == 3
    assert not short
