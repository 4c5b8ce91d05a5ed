"""Invariant checkers for the simulator (the promises of DESIGN.md, checked every step).

* S1 `SeatLedger` — counted from the clients' side: every authorization a client
  *believes* it holds, with the instant (true time) it believes it expires. A grant is
  the only thing that can raise the count, so the check runs there, after lazily
  expiring leases from a heap: O(log n) per step, no scans.
  The hard limit of a license is the seats of every distinct valid code that reached the
  pool (in the RLF, an add-on / new code delivered to a server, or a pushed RLF):
  the customer owns those seats from then on; nothing the sim does lowers a limit.
* S2 `check_conservation` — in the leader's table sum(distribution) + free pool ==
  hard limit, for every license (read from `status()`, the contract; since that costs
  O(clients) the world runs it after a leader step that changed its table — an Event
  or a PersistState — at most once per heartbeat interval, plus every minute and at
  the end).
* `LeaderTerms` — at most one leader per term.
* S6 `AdminLedger` — every admin change answered ok survives: after healing, the
  leader's RLF sequence, config version, licenses and hard limits include it. An
  invalid change answered ok is a failure too.
* L1 `check_healed` — after the last fault heals and the bound has passed: exactly one
  leader, every live server follows it in its term, and per license the clients that
  want a seat hold min(wanting, hard limit) seats.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Violation(Exception):
    """An invariant broke. ``invariant`` is its short name (S1, S2, TERM, S6, L1, ADMIN)."""

    def __init__(self, invariant: str, message: str, t: float) -> None:
        super().__init__(f"{invariant} at t={t:.3f}: {message}")
        self.invariant = invariant
        self.message = message
        self.t = t


class SimFailure(Exception):
    """A seed failed: carries the seed, the violation and a short readable trace."""

    def __init__(self, seed: int | None, violation: Violation, trace: str) -> None:
        where = f"seed {seed}: " if seed is not None else ""
        super().__init__(f"{where}{violation}\n{trace}")
        self.seed = seed
        self.violation = violation
        self.trace = trace


class SeatLedger:
    """S1: believed authorizations under unexpired leases <= hard limit, per license."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.limits: dict[str, int] = dict(limits)
        self.active: dict[str, int] = dict.fromkeys(limits, 0)
        self.peak: dict[str, int] = dict.fromkeys(limits, 0)
        self._expiry: dict[str, float] = {}  # client -> believed expiry (true time)
        self._count: dict[str, tuple[str, int]] = {}  # client -> (license, count)
        self._heap: list[tuple[float, str]] = []

    def raise_limit(self, license: str, seats: int) -> None:
        self.limits[license] = self.limits.get(license, 0) + seats
        self.active.setdefault(license, 0)
        self.peak.setdefault(license, 0)

    def expire(self, now: float) -> None:
        heap = self._heap
        exp = self._expiry
        while heap and heap[0][0] <= now:
            t, client = heapq.heappop(heap)
            if exp.get(client) == t:
                del exp[client]
                lic, n = self._count[client]
                self.active[lic] -= n

    def update(
        self, now: float, client: str, license: str, count: int, expires: float | None
    ) -> None:
        """The client now believes it holds until ``expires`` (None: holds nothing)."""
        self.expire(now)
        old = self._expiry.get(client)
        if expires is not None and expires <= now:
            expires = None
        if old is not None:
            if expires is None:
                del self._expiry[client]
                self.active[license] -= count
            elif expires != old:
                self._expiry[client] = expires
                heapq.heappush(self._heap, (expires, client))
            return
        if expires is None:
            return
        self._expiry[client] = expires
        self._count[client] = (license, count)
        heapq.heappush(self._heap, (expires, client))
        n = self.active[license] = self.active.get(license, 0) + count
        if n > self.peak.get(license, 0):
            self.peak[license] = n
        limit = self.limits.get(license, 0)
        if n > limit:
            raise Violation(
                "S1",
                f"{license}: clients believe they hold {n} seats under unexpired leases, "
                f"hard limit {limit} (last grant to {client})",
                now,
            )

    def holders(self, license: str) -> int:
        return self.active.get(license, 0)


class LeaderTerms:
    """At most one leader per term."""

    def __init__(self) -> None:
        self.leader_of: dict[int, str] = {}

    def saw(self, now: float, server: str, term: int) -> None:
        other = self.leader_of.setdefault(term, server)
        if other != server:
            raise Violation("TERM", f"two leaders in term {term}: {other} and {server}", now)


def check_conservation(now: float, status: Mapping[str, Any]) -> None:
    """S2 on a leader's status: sum(distribution) + free pool == hard limit."""
    for lic in status.get("licenses", ()):
        rows = lic.get("servers") or {}
        total = sum(r["distribution"] for r in rows.values() if r is not None)
        free = lic.get("free_pool") or 0
        if total + free != lic["hard_limit"]:
            raise Violation(
                "S2",
                f"leader {status.get('id')}: {lic['license']}: sum(distribution) {total} "
                f"+ free pool {free} != hard limit {lic['hard_limit']}",
                now,
            )
        for sid, r in rows.items():
            if r is not None and (r["in_use"] < 0 or r["distribution"] < 0):
                raise Violation("S2", f"{lic['license']}: negative cell for {sid}: {r}", now)


@dataclass
class AdminLedger:
    """S6: what the pool acknowledged; what it refused that it should have accepted."""

    rlf_seq: int = 0
    config_version: int = 0
    licenses: set[str] = field(default_factory=set)
    seats: dict[str, int] = field(default_factory=dict)  # license -> acked extra seats
    serials: set[str] = field(default_factory=set)
    acked: int = 0
    refused: int = 0
    unanswered: int = 0

    def check(self, now: float, leader: Mapping[str, Any], base_limits: Mapping[str, int]) -> None:
        where = f"leader {leader.get('id')}"
        if leader.get("rlf_seq", 0) < self.rlf_seq:
            raise Violation(
                "S6",
                f"{where} has RLF sequence {leader.get('rlf_seq')} < acked {self.rlf_seq}",
                now,
            )
        if leader.get("config_version", 0) < self.config_version:
            raise Violation(
                "S6",
                f"{where} has config version {leader.get('config_version')} "
                f"< acked {self.config_version}",
                now,
            )
        limits = {x["license"]: x["hard_limit"] for x in leader.get("licenses", ())}
        for lic in self.licenses:
            if lic not in limits:
                raise Violation("S6", f"{where} lost acked license {lic!r}", now)
        for lic, extra in self.seats.items():
            want = base_limits.get(lic, 0) + extra
            if limits.get(lic, 0) < want:
                raise Violation(
                    "S6", f"{where}: {lic} hard limit {limits.get(lic)} < acked {want}", now
                )


def check_healed(
    now: float,
    statuses: Mapping[str, Mapping[str, Any] | None],
    wanting: Mapping[str, int],
    holding: Mapping[str, int],
) -> str:
    """L1; returns the leader id. ``statuses``: live servers' status (None = down)."""
    live = {k: v for k, v in statuses.items() if v is not None}
    leaders = [k for k, v in live.items() if v["role"] == "leader"]
    if len(leaders) != 1:
        roles = {k: v["role"] for k, v in live.items()}
        raise Violation("L1", f"expected exactly one leader after healing, roles {roles}", now)
    lead = leaders[0]
    term = live[lead]["term"]
    for k, v in live.items():
        if k != lead and (v["role"] != "follower" or v.get("leader") != lead or v["term"] != term):
            raise Violation(
                "L1",
                f"{k} is {v['role']} (leader {v.get('leader')}, term {v['term']}), "
                f"not a follower of {lead} in term {term}",
                now,
            )
    limits = {x["license"]: x["hard_limit"] for x in live[lead].get("licenses", ())}
    for lic, want in wanting.items():
        expect = min(want, limits.get(lic, 0))
        if holding.get(lic, 0) != expect:
            raise Violation(
                "L1",
                f"{lic}: {want} clients want a seat, hard limit {limits.get(lic, 0)}, "
                f"but {holding.get(lic, 0)} hold one (expected {expect})",
                now,
            )
    return lead


def summarize(values: Iterable[float]) -> tuple[float, float]:
    xs = sorted(values)
    if not xs:
        return (0.0, 0.0)
    return (xs[len(xs) // 2], xs[-1])
