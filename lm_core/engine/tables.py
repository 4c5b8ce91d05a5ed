"""Distribution tables: the pool-wide table every server replicates, and the leader's ledger.

Theory of operation
-------------------
`DistributionTable` is the replicated configuration: per license the hard limit, the
expiry, the free pool and every server's current distribution, plus the license codes
added at run time, stamped with a config version ``(cfg_term, cfg_version)``. Only the
leader changes it (admin operations, borrowing, a new RLF); followers get it whole in a
DISTRIBUTION_SYNC and persist it. Conservation (S2) holds in every version:
``sum(rows) + free == hard_limit``.

A distribution is a *target*. What a server may actually have in use is its
*allowance*, which the leader hands out in heartbeats (`Ledger`). The leader keeps, per
server and license, the allowance it sent, the highest allowance the server may still
be applying (``peak``: a decrease counts only once the server ACKed a heartbeat carrying
it) and the in-use count the server last reported. The server's *hold* is
``max(peak, in_use)``: the seats it may be using. Allowances are only raised while
``sum(hold) <= hard_limit``, so the seats in use across the pool never exceed the hard
limit, whatever the targets say. Hence:

* a decrease takes effect at once in the table, but its seats become usable elsewhere
  only after the server ACKed it (or after the server was fenced: out of contact long
  enough that neither it nor its clients can hold anything);
* a decrease below a server's in-use count keeps its clients: only seats that are
  really free move;
* a new leader knows nothing of the others' allowances until they ACK (``known`` False),
  so it raises nobody until every server ACKed or was fenced;
* nobody is raised while the holds add up to more than the hard limit (in-use counts
  can overlap: a client that failed over is counted by both servers for a while).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lm_core.engine.codes import LicenseCode, parse_code
from lm_core.engine.messages import (
    ClaimRecord,
    DistributionSync,
    DrainedServer,
    LicenseDistribution,
    LicenseRow,
    ServerCount,
)
from lm_core.engine.rlf import Rlf

Cfg = tuple[int, int]  # (cfg_term, cfg_version)


@dataclass(slots=True)
class LicenseState:
    """One license in the distribution table."""

    license: str
    hard_limit: int
    expires: str  # ISO date
    free: int
    rows: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "license": self.license,
            "hard_limit": self.hard_limit,
            "expires": self.expires,
            "free": self.free,
            "rows": dict(self.rows),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LicenseState:
        return cls(
            license=str(data["license"]),
            hard_limit=int(data["hard_limit"]),
            expires=str(data["expires"]),
            free=int(data["free"]),
            rows={str(k): int(v) for k, v in dict(data["rows"]).items()},
        )


@dataclass(slots=True)
class DistributionTable:
    """The replicated distribution table (see the module docstring)."""

    licenses: dict[str, LicenseState] = field(default_factory=dict)
    codes: list[str] = field(default_factory=list)  # codes added at run time (texts)
    cfg: Cfg = (0, 0)
    # honoured fail-over claims by ticket key (see `claims`); replicated so that a later
    # leader refuses a ticket used before and tells its server about the move
    claims: dict[str, ClaimRecord] = field(default_factory=dict)
    # drained servers and the config version each drain took effect in (see `drain`)
    drained: dict[str, Cfg] = field(default_factory=dict)

    # ------------------------------------------------------------ building

    @classmethod
    def from_rlf(
        cls,
        rlf: Rlf,
        today: datetime.date,
        added: Sequence[str] = (),
        cfg: Cfg = (0, 0),
        claims: Mapping[str, ClaimRecord] | None = None,
    ) -> DistributionTable:
        """The initial table of an RLF, plus codes added at run time on top of it."""
        table = cls(cfg=cfg, claims=dict(claims or {}))
        totals = rlf.licenses(today)
        for lic, (per, free) in rlf.initial_distribution(today).items():
            table.licenses[lic] = LicenseState(
                license=lic,
                hard_limit=totals[lic].hard_limit,
                expires=totals[lic].expires.isoformat(),
                free=free,
                rows=dict(per),
            )
        for text in added:
            if text in rlf.codes:
                continue
            try:
                code = parse_code(text)
            except Exception:
                continue
            if code.expired(today):
                continue
            table.codes.append(text)
            table.add_code(code, rlf.server_ids)
        return table

    def add_code(self, code: LicenseCode, server_ids: Sequence[str]) -> None:
        """Raise a license's hard limit by the code's seats (into the free pool), or start
        a new license split evenly over the servers (remainder to the free pool)."""
        state = self.licenses.get(code.license)
        if state is None:
            share = code.seats // len(server_ids) if server_ids else 0
            rows = dict.fromkeys(server_ids, share)
            self.licenses[code.license] = LicenseState(
                license=code.license,
                hard_limit=code.seats,
                expires=code.expires.isoformat(),
                free=code.seats - share * len(server_ids),
                rows=rows,
            )
            return
        state.hard_limit += code.seats
        state.free += code.seats
        if code.kind == "base":
            state.expires = max(state.expires, code.expires.isoformat())

    # ------------------------------------------------------------ queries

    def row(self, license: str, server_id: str) -> int:
        state = self.licenses.get(license)
        return state.rows.get(server_id, 0) if state else 0

    def conserved(self) -> bool:
        """S2: every license's rows plus free pool add up to its hard limit."""
        return all(
            sum(s.rows.values()) + s.free == s.hard_limit and s.free >= 0
            for s in self.licenses.values()
        )

    def check_change(self, license: str, dist: Mapping[str, int], servers: Sequence[str]) -> str:
        """Why a CHANGE_DISTRIBUTION is invalid ("" = valid)."""
        state = self.licenses.get(license)
        if state is None:
            known = ", ".join(sorted(self.licenses)) or "none"
            return f"unknown license {license!r} (licenses: {known})"
        for sid, count in dist.items():
            if sid not in servers:
                return f"unknown server {sid!r} (servers: {', '.join(servers)})"
            if count < 0:
                return f"negative distribution {count} for server {sid!r}"
        total = sum(dist.values())
        if total > state.hard_limit:
            return (
                f"distribution of {license!r} sums to {total}, over the hard limit "
                f"{state.hard_limit}"
            )
        return ""

    # ------------------------------------------------------------ changes (leader only)

    def set_distribution(
        self, license: str, dist: Mapping[str, int], servers: Sequence[str]
    ) -> None:
        """Apply a checked CHANGE_DISTRIBUTION: unlisted servers get 0, the rest is free."""
        state = self.licenses[license]
        state.rows = {sid: int(dist.get(sid, 0)) for sid in servers}
        state.free = state.hard_limit - sum(state.rows.values())

    def move(self, license: str, source: str | None, target: str, count: int) -> None:
        """Move `count` seats to `target` from server `source` (None = the free pool)."""
        state = self.licenses[license]
        if source is None:
            state.free -= count
        else:
            state.rows[source] = state.rows.get(source, 0) - count
        state.rows[target] = state.rows.get(target, 0) + count

    def set_hard_limit(self, license: str, hard_limit: int, order: Sequence[str]) -> None:
        """A code expired (or came back): shrink the free pool first, then the rows of the
        lowest-priority servers; growth goes to the free pool."""
        state = self.licenses[license]
        excess = sum(state.rows.values()) + state.free - hard_limit
        state.hard_limit = hard_limit
        if excess <= 0:
            state.free -= excess
            return
        cut = min(state.free, excess)
        state.free -= cut
        excess -= cut
        for sid in reversed(order):
            if excess <= 0:
                break
            cut = min(state.rows.get(sid, 0), excess)
            state.rows[sid] = state.rows.get(sid, 0) - cut
            excess -= cut

    # ------------------------------------------------------------ wire / disk

    def to_sync(self, *, pool: str, sender: str, term: int, rlf_seq: int) -> DistributionSync:
        return DistributionSync(
            pool=pool,
            sender=sender,
            term=term,
            cfg_term=self.cfg[0],
            cfg_version=self.cfg[1],
            rlf_seq=rlf_seq,
            licenses=tuple(
                LicenseDistribution(
                    license=s.license,
                    hard_limit=s.hard_limit,
                    expires=s.expires,
                    free_pool=s.free,
                    rows=tuple(ServerCount(id=k, count=v) for k, v in s.rows.items()),
                )
                for s in self.licenses.values()
            ),
            codes=tuple(self.codes),
            claims=tuple(self.claims.values()),
            drained=tuple(
                DrainedServer(id=k, cfg_term=v[0], cfg_version=v[1])
                for k, v in sorted(self.drained.items())
            ),
        )

    @staticmethod
    def check_sync(msg: DistributionSync, servers: Sequence[str] | None) -> str:
        """Why a DISTRIBUTION_SYNC is not a sane table ("" = sane). `servers`: the ids
        rows may name (None: any)."""
        if len({c.key for c in msg.claims}) != len(msg.claims):
            return "a claim twice"
        drained = [d.id for d in msg.drained]
        if len(set(drained)) != len(drained):
            return "a drained server twice"
        if servers is not None and not set(drained) <= set(servers):
            return "an unknown server drained"
        names: set[str] = set()
        for d in msg.licenses:
            if d.license in names:
                return f"license {d.license!r} twice"
            names.add(d.license)
            if not 0 <= d.hard_limit <= 10**12 or d.free_pool < 0:
                return f"license {d.license!r}: bad hard limit or free pool"
            ids = [r.id for r in d.rows]
            if len(set(ids)) != len(ids) or any(r.count < 0 for r in d.rows):
                return f"license {d.license!r}: bad rows"
            if servers is not None and not set(ids) <= set(servers):
                return f"license {d.license!r}: rows for unknown servers"
            if sum(r.count for r in d.rows) + d.free_pool != d.hard_limit:
                return f"license {d.license!r}: rows and free pool do not add up"
            try:
                datetime.date.fromisoformat(d.expires)
            except ValueError:
                return f"license {d.license!r}: bad expiry {d.expires!r}"
        return ""

    @classmethod
    def from_sync(cls, msg: DistributionSync) -> DistributionTable:
        return cls(
            licenses={
                d.license: LicenseState(
                    license=d.license,
                    hard_limit=d.hard_limit,
                    expires=d.expires,
                    free=d.free_pool,
                    rows={r.id: r.count for r in d.rows},
                )
                for d in msg.licenses
            },
            codes=list(msg.codes),
            cfg=(msg.cfg_term, msg.cfg_version),
            claims={c.key: c for c in msg.claims},
            drained={d.id: (d.cfg_term, d.cfg_version) for d in msg.drained},
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "cfg": list(self.cfg),
            "codes": list(self.codes),
            "licenses": [s.as_json() for s in self.licenses.values()],
            "claims": [[c.key, c.term, c.license, c.count] for c in self.claims.values()],
            "drained": {k: list(v) for k, v in sorted(self.drained.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DistributionTable:
        cfg = data.get("cfg", [0, 0])
        return cls(
            licenses={
                str(d["license"]): LicenseState.from_json(d) for d in data.get("licenses", [])
            },
            codes=[str(c) for c in data.get("codes", [])],
            cfg=(int(cfg[0]), int(cfg[1])),
            claims={
                str(c[0]): ClaimRecord(
                    key=str(c[0]), term=int(c[1]), license=str(c[2]), count=int(c[3])
                )
                for c in data.get("claims", [])
            },
            drained={
                str(k): (int(v[0]), int(v[1])) for k, v in dict(data.get("drained", {})).items()
            },
        )


# ---------------------------------------------------------------- the leader's ledger


@dataclass(slots=True)
class Allowance:
    """The leader's record of one server's allowance for one license."""

    sent: int = 0  # the allowance the leader currently tells the server
    peak: int = 0  # the highest allowance the server may still be applying
    change_seq: int = 0  # first heartbeat seq carrying `sent`
    in_use: int = 0  # as last reported
    known: bool = False  # False: not yet heard in this leader's term
    reserved: int = 0  # seats moved here by fail-over claims not yet durable (L2)
    grace: int = 0  # of in_use: seats held back by the server's restart grace (S4)
    # it reported more seats in use than allowed when it (re)joined this leader (a
    # restart with its store: clients re-adopting their seats): its target is its in-use
    # count, not its row, until that falls to the row
    restored: bool = False

    def target(self, row: int) -> int:
        """The allowance to move toward: the row, or a restored server's in-use count."""
        if self.restored:
            if self.in_use - self.grace > row:
                return self.in_use - self.grace
            self.restored = False
        return row

    def hold(self, hard_limit: int) -> int:
        """Seats this server may be using right now (as far as the leader can tell)."""
        if not self.known:
            return hard_limit
        return max(self.peak, self.sent, self.in_use) + self.reserved


class Ledger:
    """The leader's per-server allowances (see the module docstring)."""

    def __init__(self, self_id: str, servers: Iterable[str]) -> None:
        self.self_id = self_id
        self.servers: list[str] = list(servers)
        self.allow: dict[str, dict[str, Allowance]] = {s: {} for s in self.servers}
        self.known: dict[str, bool] = {s: s == self_id for s in self.servers}
        self.fenced: set[str] = set()

    def set_servers(self, servers: Iterable[str]) -> None:
        new = list(servers)
        for sid in new:
            if sid not in self.allow:
                self.allow[sid] = {}
                self.known[sid] = False
        for sid in list(self.allow):
            if sid not in new:
                del self.allow[sid]
                del self.known[sid]
                self.fenced.discard(sid)
        self.servers = new

    def get(self, sid: str, license: str) -> Allowance:
        rows = self.allow[sid]
        a = rows.get(license)
        if a is None:
            a = rows[license] = Allowance(known=self.known[sid])
        return a

    def forget(self, sid: str) -> None:
        """`sid` went silent: count it as unknown (it may hold anything) until it reports
        again (its rows then tell the truth) or is fenced. Seats move off it only by
        claims, which take exactly what their clients held, or by the fence."""
        self.known[sid] = False
        for a in self.allow[sid].values():
            a.known = False

    def reserve(self, sid: str, license: str, count: int) -> None:
        """Hold `count` seats for `sid` (a claim moving them there, not yet durable)."""
        self.get(sid, license).reserved += count

    def unreserve(self, sid: str, license: str, count: int) -> None:
        """A claim that will not be credited gives its reservation back."""
        a = self.get(sid, license)
        if a.reserved < count:
            raise AssertionError(f"unreserve of {count} on {sid} exceeds reserved {a.reserved}")
        a.reserved -= count

    def credit(self, sid: str, license: str, count: int) -> None:
        """The claim is durable: the reserved seats become `sid`'s allowance."""
        a = self.get(sid, license)
        if a.reserved < count:
            raise AssertionError(f"credit of {count} on {sid} exceeds reserved {a.reserved}")
        a.reserved -= count
        a.sent += count
        a.peak = max(a.peak, a.sent)

    def learn(self, sid: str, seq: int, rows: Sequence[LicenseRow]) -> None:
        """An ACK of heartbeat `seq` with the server's own rows."""
        reported = {r.license: r for r in rows}
        if not self.known[sid]:
            self.known[sid] = True
            self.fenced.discard(sid)
            for lic, a in self.allow[sid].items():
                r = reported.get(lic)
                a.known = True
                a.sent = a.peak = r.allowed if r else 0
                a.in_use = r.in_use + r.grace if r else 0
                a.grace = r.grace if r else 0
                a.change_seq = 0
                a.restored = r is not None and r.in_use > r.allowed
            for lic, r in reported.items():
                if lic not in self.allow[sid]:
                    self.allow[sid][lic] = Allowance(
                        sent=r.allowed,
                        peak=r.allowed,
                        in_use=r.in_use + r.grace,
                        known=True,
                        grace=r.grace,
                        restored=r.in_use > r.allowed,
                    )
            return
        self.fenced.discard(sid)
        for lic, a in self.allow[sid].items():
            r = reported.get(lic)
            a.in_use = r.in_use + r.grace if r else 0
            a.grace = r.grace if r else 0
            if seq >= a.change_seq:
                a.peak = a.sent
        for lic, r in reported.items():
            if lic not in self.allow[sid]:
                # a license this leader never allowed: the server holds what it says
                self.allow[sid][lic] = Allowance(
                    sent=0,
                    peak=r.allowed,
                    in_use=r.in_use + r.grace,
                    known=True,
                    change_seq=seq + 1,
                    grace=r.grace,
                )

    def fence(self, sid: str) -> None:
        """The server is fenced: nothing it had can still be in use."""
        self.fenced.add(sid)
        self.known[sid] = True
        for a in self.allow[sid].values():
            a.known = True
            a.sent = a.peak = a.in_use = a.reserved = a.grace = 0
            a.change_seq = 0

    def set_self_in_use(self, license: str, in_use: int) -> None:
        self.get(self.self_id, license).in_use = in_use

    def usable(self, license: str, hard_limit: int) -> int | None:
        """Seats no server may be using: what can be allowed to someone now. None while
        some server is unknown (nothing may be raised then, not even up to a hold)."""
        total = 0
        for sid in self.servers:
            if not self.known[sid]:
                return None
            total += self.get(sid, license).hold(hard_limit)
        return hard_limit - total

    def rebalance(self, state: LicenseState, seq: int, up: Iterable[str]) -> tuple[list[str], bool]:
        """Bring allowances toward the table's rows for one license.

        Decreases apply at once (their seats stay held until ACKed); increases take
        only usable seats, highest priority first, and go only to servers in `up`.
        Returns the servers whose allowance changed and whether some server is still
        below its row."""
        reachable = set(up) - self.fenced
        changed: list[str] = []
        lic = state.license
        for sid in self.servers:
            a = self.get(sid, lic)
            if not a.known:
                continue
            target = a.target(state.rows.get(sid, 0))
            if a.sent > target:
                a.sent = target
                a.change_seq = seq
                if sid == self.self_id:
                    a.peak = target
                changed.append(sid)
        usable = self.usable(lic, state.hard_limit)
        short = False
        for sid in self.servers:
            a = self.get(sid, lic)
            target = a.target(state.rows.get(sid, 0))
            if a.sent >= target:
                continue
            if not a.known or sid not in reachable or usable is None or usable < 0:
                # Raising even up to a server's own hold is only safe while the holds
                # add up to at most the hard limit: an in-use count may be a client
                # also counted elsewhere, and an allowance outlives it.
                short = True
                continue
            before = a.hold(state.hard_limit)
            # raising `sent` by x raises the hold by max(0, sent + x - base), where base
            # is the hold without the seats reserved for claims (those add on top)
            room = usable + before - a.reserved - a.sent
            new = min(target, a.sent + max(0, room))
            if new > a.sent:
                a.sent = new
                a.peak = max(a.peak, new)
                a.change_seq = seq
                usable -= a.hold(state.hard_limit) - before
                if sid not in changed:
                    changed.append(sid)
            if a.sent < target:
                short = True
        return changed, short

    def allowances(self, sid: str) -> dict[str, int]:
        return {lic: a.sent for lic, a in self.allow[sid].items()}


def threshold_want(in_use: int, distribution: int, threshold: float) -> int:
    """How many seats to borrow so that in-use / distribution is back under the
    borrowing threshold (0 if it is not over it; claims 2 and 17)."""
    if distribution > 0 and in_use / distribution <= threshold:
        return 0
    if threshold <= 0:
        return max(1, in_use - distribution + 1)
    target = math.floor(in_use / threshold) + 1
    return max(1, target - distribution, math.ceil(distribution * 0.1))
