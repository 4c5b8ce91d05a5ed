"""Where seats move when a server borrows: the pure source order of claims 5, 14, 15, 17.

`plan_borrow` says where the leader takes `want` seats of one license from for `target`;
the leader (`server`) applies the moves to the distribution table and syncs it. The
orders:

- an ordinary borrow (claims 5, 14: a server's use crossed the borrowing threshold):
  the free pool first, then the rows of fenced servers (nothing they granted is alive),
  then the leader's own spare seats above its threshold reserve;
- a fail-over borrow (claims 15, 17: a server serves clients whose server failed): the
  leader's own spare seats (no reserve kept), then the free pool, then fenced servers'
  rows, then the unused seats of the other followers in contact that are not fenced.

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
) -> list[Move]:
    """The moves that find up to `want` seats for `target`, in order.

    `order`: the servers by priority; `rows`: the distribution; `free`: the free pool;
    `leader_in_use`: seats the leader serves; `threshold`: the RLF's borrowing threshold;
    `fenced`, `up`: the leader's view of its followers (`up` matters for fail-over only);
    `in_use_of(s)`: seats follower `s` reported in use (asked only of the followers a
    fail-over borrow may take from)."""
    moves: list[Move] = []
    left = want

    def take(source: str | None, n: int) -> None:
        nonlocal left
        n = min(n, left)
        if n <= 0:
            return
        moves.append(Move(source, n))
        left -= n

    def from_self() -> None:
        if target == leader:
            return
        row = rows.get(leader, 0)
        spare = row - leader_in_use
        if not failover:
            spare -= math.ceil(row * (1 - threshold))
        take(leader, spare)

    def from_fenced() -> None:
        for s in reversed(order):
            if s != target and s in fenced:
                take(s, rows.get(s, 0))

    if want <= 0:
        return moves
    if failover:
        from_self()
        take(None, free)
        from_fenced()
        for s in reversed(order):
            if s in (target, leader) or s not in up or s in fenced:
                continue
            take(s, rows.get(s, 0) - max(in_use_of(s), 0))
    else:
        take(None, free)
        from_fenced()
        from_self()
    return moves
