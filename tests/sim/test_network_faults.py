"""The network model and the fault planner on their own."""

from __future__ import annotations

import random

import pytest

from lm_core.engine.sim.faults import KINDS, make_fault, plan_faults
from lm_core.engine.sim.network import Network, ring_cut, split_cut

IDS = tuple("ABCDEFGHIJK")


@pytest.mark.parametrize("n", range(4, 12))
def test_majorities_ring_every_server_sees_a_majority_but_no_two_the_same(n: int) -> None:
    ids = IDS[:n]
    cut = ring_cut(ids)
    sees = {a: frozenset(b for b in ids if (a, b) not in cut) for a in ids}
    assert all(len(v) >= n // 2 + 1 for v in sees.values())
    assert len(set(sees.values())) == n
    assert all(v != frozenset(ids) for v in sees.values())


def test_split_cuts_only_across_groups() -> None:
    cut = split_cut([["A", "B"], ["C", "D", "E"]])
    assert ("A", "C") in cut
    assert ("C", "A") in cut
    assert ("A", "B") not in cut
    assert ("C", "E") not in cut


def test_network_drops_duplicates_and_partitions() -> None:
    net = Network(random.Random(1))
    assert len(net.delays("A", "B", client=False)) == 1
    net.cut = frozenset({("A", "B")})
    net.update()
    assert net.delays("A", "B", client=False) == ()
    assert len(net.delays("B", "A", client=False)) == 1  # asymmetric
    net.cut = frozenset()
    net.client_cut = frozenset({"C"})
    net.update()
    assert net.delays("c1", "C", client=True) == ()
    assert len(net.delays("c1", "A", client=True)) == 1
    net.client_cut = frozenset()
    net.drop = 1.0
    net.update()
    assert net.delays("A", "B", client=False) == ()
    net.drop, net.dup = 0.0, 1.0
    net.update()
    assert len(net.delays("A", "B", client=False)) == 2


def test_fault_plan_is_deterministic_and_ends_before_healing() -> None:
    a = plan_faults(
        random.Random(9), IDS[:5], start=20, heal_at=800, mean_gap=30, mean_length=40, lease=10
    )
    b = plan_faults(
        random.Random(9), IDS[:5], start=20, heal_at=800, mean_gap=30, mean_length=40, lease=10
    )
    assert a == b
    assert a
    assert all(20 <= f.start <= f.end <= 800 for f in a)
    rng = random.Random(3)
    for kind in KINDS:
        f = make_fault(rng, kind, 10.0, 5.0, IDS[:5], 8.0)
        assert f.kind == kind
