"""Where seats move when a server borrows: the pure source order of claims 5, 14, 15, 17.

`plan_borrow` says where the leader takes `want` seats of one license from for `target`;
the leader (`leading`) applies the moves to the distribution table and syncs it. The
orders:

- an ordinary borrow (claims 5, 14: a server's use crossed the borrowing threshold):
  the free pool first, then the rows of fenced servers (nothing they granted is alive),
  then the leader's own spare seats above its threshold reserve;
- a fail-over borrow (claims 15, 17: a server serves clients whose server failed): the
  leader's own spare seats (no reserve kept), then the free pool, then fenced servers'
  rows, then the unused seats of the other followers in contact that are not fenced;
- a gathering borrow (claims 5 and 14 in spirit: a request larger than any one server's
  allocation, when the pool has the seats): the ordinary order, then the leader's
  reserve and the other followers' unused seats, all or nothing beyond the ordinary.

The unused seats of servers drained for maintenance (`drain`) come right after the
free pool in every order.

Servers are tried in reverse priority order (lowest priority gives first). A move never
takes from `target` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Move:
    """`count` seats move to the borrower from `source` (None: the free pool)."""

    source: str | None
    count: int


def plan_borrow(
    *,
    target: str,
    want: int,
    failover: bool,
    leader: str,
    order: Sequence[str],
    rows: Mapping[str, int],
    free: int,
    leader_in_use: int,
    threshold: float,
    fenced: Container[str],
    up: Container[str],
    in_use_of: Callable[[str], int],
    drained: Container[str] = (),
    gather: int = 0,
) -> list[Move]:
    """The moves that find up to `want` seats for `target`, in order.

    `order`: the servers by priority; `rows`: the distribution; `free`: the free pool;
    `leader_in_use`: seats the leader serves; `threshold`: the RLF's borrowing threshold;
    `fenced`, `up`: the leader's view of its followers (`up` matters for fail-over and
    gathering only); `in_use_of(s)`: seats follower `s` reported in use (asked only of
    the followers whose unused seats may move); `drained`: servers drained for
    maintenance (their unused seats come right after the free pool); `gather`: the
    whole count of a request the borrower must deny unless it gets `want` more seats
    (0: an ordinary borrow)."""
    if want <= 0:
        return []
    plan = _Plan(want)

    def from_self(reserve: bool) -> None:
        if target == leader:
            return
        row = rows.get(leader, 0)
        spare = row - leader_in_use
        if reserve and leader not in drained:
            spare -= math.ceil(row * (1 - threshold))
        plan.take(leader, spare)

    def from_fenced() -> None:
        for s in reversed(order):
            if s != target and s in fenced:
                plan.take(s, rows.get(s, 0))

    def unused(s: str) -> int:
        return rows.get(s, 0) - max(in_use_of(s), 0)

    def from_drained() -> None:
        for s in reversed(order):
            if s not in (target, leader) and s in drained and s not in fenced:
                plan.take(s, unused(s))

    def others() -> list[str]:
        return [
            s for s in reversed(order) if s not in (target, leader) and s in up and s not in fenced
        ]

    def from_followers() -> None:
        for s in others():
            plan.take(s, unused(s))

    def one_serves() -> bool:
        """Could one other server (not drained: that one serves nobody) serve the whole
        request from its own unused seats?"""
        mine = rows.get(leader, 0) - leader_in_use
        if target != leader and leader not in drained and mine >= gather:
            return True
        return any(unused(s) >= gather for s in others() if s not in drained)

    if failover:
        from_self(reserve=False)
        plan.take(None, free)
        from_drained()
        from_fenced()
        from_followers()
        return plan.moves
    plan.take(None, free)
    from_drained()
    from_fenced()
    from_self(reserve=True)
    if gather > 0 and plan.left > 0 and not one_serves():
        # A request larger than what any one server has free (a client walks the
        # server list, so one that fits somewhere is served there: seats do not chase
        # it around the pool) and than ordinary borrowing finds: gather the rest from
        # the leader's reserve and the other followers' unused seats -- but only when
        # the pool has all of them (else nobody's seats move for a request that must
        # be denied anyway).
        ordinary = plan
        plan = _Plan(ordinary.left, ordinary.taken)
        from_self(reserve=False)
        from_followers()
        if plan.left > 0:
            return ordinary.moves
        merged: dict[str | None, int] = {}  # one move per source, in order
        for m in ordinary.moves + plan.moves:
            merged[m.source] = merged.get(m.source, 0) + m.count
        return [Move(source, n) for source, n in merged.items()]
    return plan.moves


class _Plan:
    """Moves being collected: at most `want` seats, each source taken from once in
    total (a source tried twice gives only what it has not given yet)."""

    def __init__(self, want: int, taken: dict[str | None, int] | None = None) -> None:
        self.left = want
        self.moves: list[Move] = []
        self.taken: dict[str | None, int] = dict(taken or {})

    def take(self, source: str | None, n: int) -> None:
        n = min(n - self.taken.get(source, 0), self.left)
        if n <= 0:
            return
        self.moves.append(Move(source, n))
        self.taken[source] = self.taken.get(source, 0) + n
        self.left -= n
