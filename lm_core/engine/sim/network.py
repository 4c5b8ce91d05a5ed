"""The simulated network: delay, loss, duplication, reordering, partitions and replay.

`Network.delays(src, dst)` answers "when does this message arrive?" with zero (dropped),
one or two (duplicated) delays. Reordering falls out of per-message jitter. Partitions
are a set of cut *directed* server pairs (so asymmetric cuts are natural) plus a set of
servers the clients cannot reach. Replays re-deliver a message seen earlier.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from lm_core.engine.sim.rng import Rng


class Network:
    def __init__(
        self,
        rng: Rng,
        *,
        base_delay: float = 0.001,
        jitter: float = 0.004,
        replay_memory: int = 128,
    ) -> None:
        self.rng = rng
        self.base_delay = base_delay
        self.jitter = jitter
        self.cut: frozenset[tuple[str, str]] = frozenset()  # (src, dst) server pairs cut
        self.client_cut: frozenset[str] = frozenset()  # servers clients cannot reach
        self.drop = 0.0
        self.dup = 0.0
        self.slow = 0.0  # extra delay up to this many seconds
        self.faulty = False  # fast path when nothing is wrong
        self.recent: deque[tuple[str, str, Any]] = deque(maxlen=replay_memory)
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    def update(self) -> None:
        self.faulty = bool(self.cut or self.client_cut or self.drop or self.dup or self.slow)

    def delays(self, src: str, dst: str, *, client: bool) -> tuple[float, ...]:
        """Arrival delays for one message (empty: lost). ``client``: one end is a client
        or an admin, so only `client_cut` applies."""
        self.sent += 1
        rng = self.rng
        if not self.faulty:
            return (self.base_delay + rng.random() * self.jitter,)
        if client:
            if src in self.client_cut or dst in self.client_cut:
                self.dropped += 1
                return ()
        elif (src, dst) in self.cut:
            self.dropped += 1
            return ()
        if self.drop and rng.random() < self.drop:
            self.dropped += 1
            return ()
        d = self.base_delay + rng.random() * self.jitter
        if self.slow:
            d += rng.random() * self.slow
        if self.dup and rng.random() < self.dup:
            self.duplicated += 1
            return (d, d + rng.random() * (self.jitter + self.slow))
        return (d,)

    def remember(self, src: str, dst: str, msg: Any) -> None:
        """Keep a server-to-server message for a later replay."""
        self.recent.append((src, dst, msg))

    def replay(self) -> tuple[str, str, Any] | None:
        if not self.recent:
            return None
        return self.recent[int(self.rng.random() * len(self.recent))]


def ring_cut(ids: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    """The majorities ring: each server reaches its nearest neighbours on a circle so
    that it sees a majority, but neighbours see different majorities."""
    n = len(ids)
    majority = n // 2 + 1
    reach = majority // 2  # neighbours on each side: 1 + 2 * reach >= majority
    cut = set()
    for i in range(n):
        for j in range(n):
            d = min((i - j) % n, (j - i) % n)
            if i != j and d > reach:
                cut.add((ids[i], ids[j]))
    return frozenset(cut)


def split_cut(groups: list[list[str]]) -> frozenset[tuple[str, str]]:
    """Cut every pair of servers that are in different groups (both directions)."""
    where = {s: k for k, g in enumerate(groups) for s in g}
    return frozenset((a, b) for a in where for b in where if where[a] != where[b])
