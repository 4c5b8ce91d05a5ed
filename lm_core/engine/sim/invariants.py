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
* L2 `FailoverLedger` — users don't notice fail-over, counted from the clients' side
  (where it applies: see the class).
* BUG — an engine step raised, or emitted ``Event("bug")``: the world turns either into
  ``Violation("BUG", ...)``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Violation(Exception):
    """An invariant broke. ``invariant`` is its short name (S1, S2, TERM, S6, L1, L2, ADMIN,
    BUG)."""

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


L2_KINDS = frozenset({"crash", "pause", "isolate", "split"})


@dataclass
class L2Stats:
    """What the L2 checker saw in one run (figures for `SeedResult` and `lm sim`)."""

    windows: int = 0  # single-fault windows opened
    skipped: int = 0  # faults not judged (not alone, pool not settled, or not an L2 kind)
    voided: int = 0  # windows ended early by a second fault or an admin operation
    affected: int = 0  # clients that held a seat on a faulted server at the fault
    reseat: list[float] = field(default_factory=list)  # seconds from the fault, per client
    late: int = 0  # affected clients not re-seated within the bound
    unseated: int = 0  # ... nor by the end of the window (no re-seat time recorded)
    lapsed_affected: int = 0  # affected clients whose lease ran out (before re-seating)
    dropped: int = 0  # ... renewed by the faulted server, then lost their lease
    live: int = 0  # clients of servers that stayed up, tracked through a window
    moved: int = 0  # ... that changed server
    lapsed: int = 0  # ... whose lease ran out (or was taken)


@dataclass
class _Window:
    start: float
    what: str
    servers: frozenset[str]
    deadline: float  # start + re-seat bound
    fault_end: float  # inf while the fault lasts
    close_at: float  # live clients are watched until then
    judged: bool  # the re-seat deadline has been checked
    affected: dict[str, str]  # client -> the faulted server it held on (not re-seated yet)
    live: dict[str, str]  # client -> the server it holds on (stays up)
    provisional: dict[str, str] = field(default_factory=dict)  # renewed by a faulted server


class FailoverLedger:
    """L2: users don't notice fail-over, counted from the clients' side.

    **When it applies** (a *window*; the world opens one only if all of this holds):

    * the run's configuration qualifies (`runner.l2_applies`: the pool's timing lets a
      leader be elected, and a cut-off server's clients walk, within the bound; the
      clients retry a full walk of refusals within half a heartbeat);
    * a single fault starts that takes servers away from the majority: ``crash`` (dies),
      ``isolate`` / ``split`` (cut off from the other servers, a majority stays
      together; clients still reach every server) or ``pause`` (GC, SIGSTOP);
    * at that moment no other fault is active, the last fault ended (and the last admin
      operation was sent, and the run started) at least ``settle`` ago, every server is
      up and unpaused, and exactly one leader is followed by every other server in its
      term.

    A window ends early (*voided*: what was not decided yet is left undecided; what was
    already seen counts) when another fault starts or an admin operation is sent — so
    overlapping faults, message-loss / duplication / delay / replay storms, client cuts,
    asymmetric and ring partitions, and admin changes (distribution, RLF pushes) are not
    judged. Otherwise it ends ``settle`` after the fault ends (and not before the
    re-seat deadline).

    **What must hold in a window** (``bound = (2 x client_heartbeat + 1 s) x (1 + 2 x
    drift)``, true time from the fault's start):

    * every client that held a seat (HOLDING, unexpired) on a faulted server at the start
      and still wants it is *re-seated* — authorized (granted, adopted or renewed) again
      after the fault started — by ``start + bound``, whether or not the pool has free
      seats. Its old lease may run out meanwhile (counted as ``lapsed_affected``, not a
      failure). A renewal by the faulted server itself while its fault lasts (a cut-off
      server renewing within its renew window; a step before dying) seats the client
      only *provisionally*: if it then loses its lease before a healthy server (or the
      same server, its fault over) authorizes it, while the window lasts, L2 fails;
    * every client that held a seat on any other server at the start and still wants it
      is never authorized by another server (``moved``) and never loses its lease
      (``lapsed``) until the window ends.

    A client that lets go (release) leaves the window. With ``enforce`` False the ledger
    only counts (the "before" figures of an engine that is expected to fail).
    """

    def __init__(self, *, bound: float, settle: float, enforce: bool = True) -> None:
        self.bound = bound
        self.settle = settle
        self.enforce = enforce
        self.stats = L2Stats()
        self.last_disturbance = 0.0
        self.window: _Window | None = None

    # ----------------------------------------------------------------- life cycle

    def quiet(self, now: float) -> bool:
        """No window open and nothing happened for ``settle``."""
        return self.window is None and now - self.last_disturbance >= self.settle

    def disturb(self, now: float, why: str) -> None:
        """Another fault started, a fault ended, or an admin operation was sent."""
        self.last_disturbance = now
        w = self.window
        if w is not None:
            self.due(now)
            if self.window is not None:
                self.stats.voided += 1
                self.window = None

    def open(
        self,
        now: float,
        what: str,
        servers: frozenset[str],
        affected: Mapping[str, str],
        live: Mapping[str, str],
    ) -> None:
        self.last_disturbance = now
        self.window = _Window(
            start=now,
            what=what,
            servers=servers,
            deadline=now + self.bound,
            fault_end=float("inf"),
            close_at=float("inf"),
            judged=False,
            affected=dict(affected),
            live=dict(live),
        )
        s = self.stats
        s.windows += 1
        s.affected += len(affected)
        s.live += len(live)

    def fault_ended(self, now: float) -> None:
        """The window's own fault ended (server restarted, link healed, pause over)."""
        self.last_disturbance = now
        w = self.window
        if w is not None and w.fault_end == float("inf"):
            w.fault_end = now
            w.close_at = max(w.deadline, now + self.settle)

    def due(self, now: float) -> None:
        """Judge deadlines that have passed; close the window when its time is up."""
        w = self.window
        if w is None:
            return
        if now >= w.deadline and not w.judged:
            w.judged = True
            if w.affected:
                late = sorted(w.affected.items())
                self.stats.late += len(late)
                cid, sid = late[0]
                self._fail(
                    now,
                    f"{len(late)} client(s) of {w.what} not holding a seat again "
                    f"{self.bound:.2f}s after the fault (e.g. {cid}, held on {sid})",
                )
        if now >= w.close_at:
            self.stats.unseated += len(w.affected)
            self.window = None

    # ----------------------------------------------------------------- client side

    def authorized(self, now: float, client: str, server: str) -> None:
        w = self.window
        if w is None:
            return
        faulted = server in w.servers and now < w.fault_end
        held = w.affected.pop(client, None)
        if held is not None:
            self.stats.reseat.append(now - w.start)  # late ones were counted at the deadline
            if faulted:
                w.provisional[client] = server
            return
        if not faulted and w.provisional.pop(client, None) is not None:
            return  # renewed by the faulted server, now seated on a healthy one
        was = w.live.get(client)
        if was is not None and server != was:
            del w.live[client]
            self.stats.moved += 1
            self._fail(
                now,
                f"{client} held on {was}, which stayed up, but moved to {server} "
                f"{now - w.start:.2f}s after {w.what}",
            )

    def lost(self, now: float, client: str, reason: str) -> None:
        w = self.window
        if w is None:
            return
        if client in w.affected:
            self.stats.lapsed_affected += 1
            return
        renewed_by = w.provisional.pop(client, None)
        if renewed_by is not None:
            self.stats.lapsed_affected += 1
            self.stats.dropped += 1
            self._fail(
                now,
                f"{client} was renewed by {renewed_by} during {w.what}, then lost its lease "
                f"({reason}) {now - w.start:.2f}s after the fault",
            )
            return
        was = w.live.pop(client, None)
        if was is not None:
            self.stats.lapsed += 1
            self._fail(
                now,
                f"{client} held on {was}, which stayed up, but lost its lease ({reason}) "
                f"{now - w.start:.2f}s after {w.what}",
            )

    def released(self, client: str) -> None:
        w = self.window
        if w is not None:
            w.affected.pop(client, None)
            w.provisional.pop(client, None)
            w.live.pop(client, None)

    def _fail(self, now: float, message: str) -> None:
        if self.enforce:
            raise Violation("L2", message, now)


def summarize(values: Iterable[float]) -> tuple[float, float]:
    xs = sorted(values)
    if not xs:
        return (0.0, 0.0)
    return (xs[len(xs) // 2], xs[-1])
