"""The usage report: every server's usage log merged into who held how many seats when.

Theory of operation
-------------------
Each server logs the seats *it* handed out (`store`: grant, release, expire, reclaim,
moved; denials as one row per wait). The report

1. pairs, per server, each grant with the next event that ends it on that server
   (release, expiry, reclaim, moved; a later grant of the same entry -- re-adopted after
   a restart -- ends the earlier one too). A grant still open when the server answered
   is held until its answer (`UsageFetch.now`), or the window's end if sooner; an end
   with nothing open (a released seat kept counted for a fail-over claim, then moved)
   ends nothing;
2. merges the servers per (client, license): a client holds one entry per license at a
   time, so when its seats moved to another server (fail-over, or a dead server's entry
   that only expired after the client was re-granted elsewhere), the earlier interval
   ends where the next one starts. A seat held on several servers' logs is therefore
   counted once, on the server that held it last;
3. sweeps the intervals of each license in time order, per period (UTC day or hour):
   peak concurrent seats, seat-seconds (the integral), the average (seat-seconds over
   the period's part inside the window), and seat-hours per user;
4. merges denials: one wait = the same (client, license, reason) refused again within
   `DENIAL_WAIT_GAP` of its previous refusal, on any server (a waiting client walks every
   server); counted per period of its first refusal, with its attempts and the distinct
   users refused.

An expiry row is dated at the end of the client's own lease (the server found it later;
see `LogUsage.ago`), so a crashed client counts until its lease ran out, not until the
server noticed.

Pure: no IO (the rows come from `usage.fetch_usage`).
"""

from __future__ import annotations

import bisect
import datetime
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lm_core.engine import messages as m
from lm_core.runtime.store import DENIAL_WAIT_GAP

Period = Literal["day", "hour"]
PERIOD_SECONDS: dict[str, float] = {"day": 86_400.0, "hour": 3_600.0}
ENDS = frozenset({"release", "expire", "reclaim", "moved"})
TOP_USERS = 5


@dataclass(frozen=True, slots=True)
class Interval:
    """`count` seats of `license` held by `client_id` over ``[start, end)`` on `server`."""

    server: str
    client_id: str
    license: str
    count: int
    start: float
    end: float
    user: str


@dataclass(slots=True)
class Wait:
    """One client's refusals of one license for one reason, merged across servers."""

    client_id: str
    license: str
    reason: str
    first: float
    last: float
    attempts: int
    user: str
    servers: set[str] = field(default_factory=set)


def user_of(rec: m.UsageRecord) -> str:
    """Who a row names: the stated user, else the client id."""
    if rec.identity is not None and rec.identity.user:
        return rec.identity.user
    return rec.client_id


# ---------------------------------------------------------------- 1 + 2: intervals


def server_intervals(
    server: str, rows: Iterable[m.UsageRecord], *, since: float, until: float
) -> list[Interval]:
    """One server's seat intervals (step 1): open ones end at `until`."""
    out: list[Interval] = []
    open_: dict[tuple[str, str], tuple[float, int, str]] = {}
    for rec in sorted(rows, key=lambda r: r.id):
        key = (rec.client_id, rec.license)
        if rec.kind == "grant":
            prev = open_.pop(key, None)
            if prev is not None:
                out.append(Interval(server, *key, prev[1], prev[0], max(prev[0], rec.at), prev[2]))
            open_[key] = (rec.at, rec.count, user_of(rec))
        elif rec.kind in ENDS:
            prev = open_.pop(key, None)
            if prev is None:
                # nothing open to end: a second end of one entry (a released seat kept
                # counted for a claim, then moved) -- the window's rows hold every grant
                # still open at its start, so this is never a seat held from before it
                continue
            out.append(Interval(server, *key, prev[1], prev[0], max(prev[0], rec.at), prev[2]))
    for key, (start, count, user) in open_.items():
        out.append(Interval(server, *key, count, start, max(start, until), user))
    return out


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Step 2: per (client, license), an interval ends where the client's next one (on any
    server) starts, so no seat is counted on two servers at once."""
    by_client: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    for iv in intervals:
        by_client[(iv.client_id, iv.license)].append(iv)
    out: list[Interval] = []
    for ivs in by_client.values():
        ivs.sort(key=lambda iv: (iv.start, iv.end))
        for i, iv in enumerate(ivs):
            end = iv.end
            if i + 1 < len(ivs):
                end = min(end, ivs[i + 1].start)
            if end > iv.start:
                out.append(Interval(iv.server, iv.client_id, iv.license, iv.count, iv.start,
                                    end, iv.user))  # fmt: skip
    return out


def merge_waits(denials: Iterable[tuple[str, m.UsageRecord]]) -> list[Wait]:
    """Step 4: (server, deny row) pairs merged into waits across servers."""
    rows = sorted(denials, key=lambda sr: sr[1].at)
    open_: dict[tuple[str, str, str], Wait] = {}
    out: list[Wait] = []
    for server, rec in rows:
        key = (rec.client_id, rec.license, rec.reason)
        last = rec.last_at or rec.at
        wait = open_.get(key)
        if wait is not None and rec.at <= wait.last + DENIAL_WAIT_GAP:
            wait.last = max(wait.last, last)
            wait.attempts += rec.attempts
            wait.servers.add(server)
            continue
        wait = Wait(rec.client_id, rec.license, rec.reason, rec.at, last, rec.attempts,
                    user_of(rec), {server})  # fmt: skip
        open_[key] = wait
        out.append(wait)
    return out


# ---------------------------------------------------------------- 3: periods


def period_starts(since: float, until: float, by: Period) -> list[float]:
    """UTC period boundaries covering ``[since, until)`` (the first at or before since)."""
    step = PERIOD_SECONDS[by]
    first = since - (since % step)  # epoch seconds: UTC days and hours are whole multiples
    out = []
    t = first
    while t < until:
        out.append(t)
        t += step
    return out or [first]


@dataclass(slots=True)
class PeriodStats:
    start: float
    end: float
    peak: int = 0
    seat_seconds: float = 0.0
    covered: float = 0.0  # seconds of the period inside the window
    users: dict[str, float] = field(default_factory=dict)  # user -> seat-seconds
    waits: list[Wait] = field(default_factory=list)

    @property
    def average(self) -> float:
        return self.seat_seconds / self.covered if self.covered > 0 else 0.0


def _sweep(
    intervals: Sequence[Interval], starts: list[float], step: float, since: float, until: float
) -> list[PeriodStats]:
    stats = [
        PeriodStats(s, s + step, covered=max(0.0, min(s + step, until) - max(s, since)))
        for s in starts
    ]
    # seat changes (time, delta), clipped to the window
    changes: list[tuple[float, int]] = []
    for iv in intervals:
        a, b = max(iv.start, since), min(iv.end, until)
        if b <= a:
            continue
        changes.append((a, iv.count))
        changes.append((b, -iv.count))
        _add_user(stats, starts, step, iv.user, iv.count, a, b)
    changes.sort(key=lambda c: (c[0], c[1]))  # ends before starts at one instant
    seats = 0
    last_t = since
    for t, delta in changes:
        _accumulate(stats, starts, step, seats, last_t, t)
        seats += delta
        last_t = t
    _accumulate(stats, starts, step, seats, last_t, until)
    return stats


def _period_index(starts: list[float], step: float, t: float) -> int:
    return bisect.bisect_right(starts, t) - 1


def _accumulate(
    stats: list[PeriodStats], starts: list[float], step: float, seats: int, a: float, b: float
) -> None:
    """Add `seats` held over [a, b) to the periods it spans (and their peaks)."""
    if b <= a:
        return
    i = max(0, _period_index(starts, step, a))
    while i < len(stats) and stats[i].start < b:
        lo, hi = max(a, stats[i].start), min(b, stats[i].end)
        if hi > lo:
            stats[i].seat_seconds += seats * (hi - lo)
            if seats > stats[i].peak:
                stats[i].peak = seats
        i += 1


def _add_user(
    stats: list[PeriodStats], starts: list[float], step: float, user: str, count: int,
    a: float, b: float,
) -> None:  # fmt: skip
    i = max(0, _period_index(starts, step, a))
    while i < len(stats) and stats[i].start < b:
        lo, hi = max(a, stats[i].start), min(b, stats[i].end)
        if hi > lo:
            stats[i].users[user] = stats[i].users.get(user, 0.0) + count * (hi - lo)
        i += 1


# ---------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class Filters:
    license: str = ""
    user: str = ""


def build_report(
    rows: Mapping[str, Sequence[m.UsageRecord]],
    server_now: Mapping[str, float],
    *,
    since: float,
    until: float,
    by: Period = "day",
    filters: Filters = Filters(),
    hard_limits: Mapping[str, int | None] | None = None,
    unreachable: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-able dict (the `lm report --json` contract, docs/CONTRACTS.md)."""
    intervals: list[Interval] = []
    denials: list[tuple[str, m.UsageRecord]] = []
    for sid, recs in rows.items():
        end = min(until, server_now.get(sid, until) or until)
        intervals.extend(server_intervals(sid, recs, since=since, until=end))
        denials.extend((sid, r) for r in recs if r.kind == "deny")
    merged = merge_intervals(intervals)
    waits = [w for w in merge_waits(denials) if w.last >= since and w.first < until]
    if filters.license:
        merged = [iv for iv in merged if iv.license == filters.license]
        waits = [w for w in waits if w.license == filters.license]
    if filters.user:
        merged = [iv for iv in merged if iv.user == filters.user]
        waits = [w for w in waits if w.user == filters.user]
    licenses = sorted({iv.license for iv in merged} | {w.license for w in waits}
                      | set(hard_limits or {}))  # fmt: skip
    if filters.license:
        licenses = [lic for lic in licenses if lic == filters.license]
    starts = period_starts(since, until, by)
    step = PERIOD_SECONDS[by]
    out_licenses = []
    for lic in licenses:
        ivs = [iv for iv in merged if iv.license == lic]
        stats = _sweep(ivs, starts, step, since, until)
        for w in waits:
            if w.license == lic:
                idx = max(0, _period_index(starts, step, max(w.first, since)))
                if idx < len(stats):
                    stats[idx].waits.append(w)
        total_users: dict[str, float] = defaultdict(float)
        for st in stats:
            for u, sec in st.users.items():
                total_users[u] += sec
        lic_waits = [w for st in stats for w in st.waits]
        seat_seconds = sum(st.seat_seconds for st in stats)
        covered = max(0.0, until - since)
        out_licenses.append(
            {
                "license": lic,
                "hard_limit": (hard_limits or {}).get(lic),
                "peak": max((st.peak for st in stats), default=0),
                "seat_seconds": round(seat_seconds, 3),
                "seat_hours": round(seat_seconds / 3600.0, 4),
                "average": round(seat_seconds / covered, 4) if covered else 0.0,
                "denials": _denials(lic_waits),
                "top_users": _top(total_users),
                "periods": [_period_json(st) for st in stats if st.covered > 0],
                "timeline": timeline(ivs, since, until),
                "denied_at": sorted(round(w.first, 3) for w in lic_waits),
            }
        )
    return {
        "since": iso(since),
        "until": iso(until),
        "by": by,
        "filters": {"license": filters.license or None, "user": filters.user or None},
        "servers_read": sorted(rows),
        "servers_unreachable": dict(unreachable or {}),
        "licenses": out_licenses,
    }


def timeline(ivs: Iterable[Interval], since: float, until: float) -> list[list[float]]:
    """Seats in use as steps: ``[[t, seats], ...]`` from `since` (each change, then the
    value at `until`), for plots."""
    changes: dict[float, int] = defaultdict(int)
    for iv in ivs:
        a, b = max(iv.start, since), min(iv.end, until)
        if b > a:
            changes[a] += iv.count
            if b < until:  # still held at the window's end: no step down there
                changes[b] -= iv.count
    seats = 0
    out: list[list[float]] = [[round(since, 3), 0]]
    for t in sorted(changes):
        seats += changes[t]
        if out and out[-1][0] == round(t, 3):
            out[-1][1] = seats
        else:
            out.append([round(t, 3), seats])
    out.append([round(until, 3), seats])
    return out


def _denials(waits: Sequence[Wait]) -> dict[str, dict[str, int]]:
    by_reason: dict[str, list[Wait]] = defaultdict(list)
    for w in waits:
        by_reason[w.reason].append(w)
    return {
        reason: {
            "waits": len(ws),
            "attempts": sum(w.attempts for w in ws),
            "users": len({w.user for w in ws}),
        }
        for reason, ws in sorted(by_reason.items())
    }


def _top(users: Mapping[str, float], n: int | None = TOP_USERS) -> list[dict[str, Any]]:
    ranked = sorted(users.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        {"user": u, "seat_hours": round(sec / 3600.0, 4), "seat_seconds": round(sec, 3)}
        for u, sec in (ranked if n is None else ranked[:n])
    ]


def _period_json(st: PeriodStats) -> dict[str, Any]:
    return {
        "start": iso(st.start),
        "end": iso(st.end),
        "peak": st.peak,
        "average": round(st.average, 4),
        "seat_seconds": round(st.seat_seconds, 3),
        "seat_hours": round(st.seat_seconds / 3600.0, 4),
        "denials": _denials(st.waits),
        "denied_users": len({w.user for w in st.waits}),
        "top_users": _top(st.users),
    }


def iso(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC (whole seconds)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
