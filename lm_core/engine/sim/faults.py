"""The fault schedule: episodes of crashes, pauses, partitions and bad network.

`plan_faults` draws a list of `Fault` episodes (start, end, kind, target) from the
seeded generator; the world starts each at ``start`` and undoes it at ``end``. Every
episode ends before ``heal_at``; after that the network is clean and every server runs.

Kinds:
  crash      server loses its memory at ``start`` (possibly mid-step), restarts at ``end``
             from what it persisted
  pause      server stops processing (GC, SIGSTOP) while its clock keeps running
  isolate    one server cut off from the other servers (clients still reach it)
  split      majority / minority split of the servers
  asym       some directed server pairs cut (A hears B, B does not hear A)
  ring       the majorities ring
  clientcut  clients cannot reach one server
  lossy      messages dropped with probability ``level``
  dup        messages duplicated with probability ``level``
  slow       extra delay up to ``level`` seconds (reordering)
  replay     old server messages re-delivered, ``level`` per second
"""

from __future__ import annotations

from dataclasses import dataclass

from lm_core.engine.sim.network import ring_cut, split_cut
from lm_core.engine.sim.rng import Rng

KINDS = (
    "crash",
    "pause",
    "isolate",
    "split",
    "asym",
    "ring",
    "clientcut",
    "lossy",
    "dup",
    "slow",
    "replay",
)
WEIGHTS = (5, 2, 3, 3, 2, 1, 1, 2, 2, 2, 1)


@dataclass(frozen=True, slots=True)
class Fault:
    start: float
    end: float
    kind: str
    servers: tuple[str, ...] = ()
    cut: frozenset[tuple[str, str]] = frozenset()
    level: float = 0.0

    def describe(self) -> str:
        what = ",".join(self.servers)
        extra = f" level={self.level:.3g}" if self.level else ""
        return f"{self.kind} {what}{extra} for {self.end - self.start:.1f}s"


def _weighted(rng: Rng, kinds: tuple[str, ...], weights: tuple[int, ...]) -> str:
    total = sum(weights)
    x = rng.random() * total
    for k, w in zip(kinds, weights, strict=True):
        x -= w
        if x < 0:
            return k
    return kinds[-1]


def make_fault(
    rng: Rng, kind: str, start: float, length: float, ids: tuple[str, ...], lease: float
) -> Fault:
    """One episode of ``kind`` on servers ``ids``; ``lease`` scales pauses."""
    end = start + length
    n = len(ids)
    if kind in ("crash", "isolate", "clientcut"):
        return Fault(start, end, kind, (rng.choice(ids),))
    if kind == "pause":
        return Fault(start, start + lease * rng.uniform(0.2, 3.0), kind, (rng.choice(ids),))
    if kind == "split":
        minority = rng.sample(list(ids), rng.randint(1, (n - 1) // 2 if n > 2 else 1))
        rest = [s for s in ids if s not in minority]
        return Fault(start, end, kind, tuple(minority), split_cut([minority, rest]))
    if kind == "asym":
        pairs = [(a, b) for a in ids for b in ids if a != b]
        cut = frozenset(rng.sample(pairs, rng.randint(1, max(1, len(pairs) // 3))))
        return Fault(start, end, kind, tuple(sorted({a for a, _ in cut})), cut)
    if kind == "ring":
        order = list(ids)
        rng.shuffle(order)
        return Fault(start, end, kind, tuple(order), ring_cut(tuple(order)))
    if kind == "lossy":
        return Fault(start, end, kind, level=rng.uniform(0.05, 0.5))
    if kind == "dup":
        return Fault(start, end, kind, level=rng.uniform(0.05, 0.4))
    if kind == "slow":
        return Fault(start, end, kind, level=rng.uniform(0.05, 2.0))
    if kind == "replay":
        return Fault(start, end, kind, level=rng.uniform(0.5, 5.0))
    raise ValueError(f"unknown fault kind {kind!r}")


def plan_faults(
    rng: Rng,
    ids: tuple[str, ...],
    *,
    start: float,
    heal_at: float,
    mean_gap: float,
    mean_length: float,
    lease: float,
    kinds: tuple[str, ...] = KINDS,
    quiet: float = 0.0,
) -> list[Fault]:
    """Random episodes starting between ``start`` and ``heal_at`` (all end by then).
    ``quiet`` > 0: each episode starts at least that long after the previous one ended
    (single faults on a settled pool, as L2 judges them); 0 lets episodes overlap."""
    weights = tuple(WEIGHTS[KINDS.index(k)] for k in kinds)
    out: list[Fault] = []
    t = start + rng.expovariate(1.0 / mean_gap)
    while t < heal_at:
        kind = _weighted(rng, kinds, weights)
        length = min(rng.expovariate(1.0 / mean_length), heal_at - t)
        f = make_fault(rng, kind, t, length, ids, lease)
        if f.end > heal_at:
            f = Fault(f.start, heal_at, f.kind, f.servers, f.cut, f.level)
        out.append(f)
        t += rng.expovariate(1.0 / mean_gap)
        if quiet > 0:
            t = max(t, f.end + quiet)
    return out
