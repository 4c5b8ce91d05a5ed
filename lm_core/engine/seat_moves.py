"""Where seats move with their clients on fail-over (L2): the claim a client's ticket makes
on the server it moved to, both sides (`SeatMoves`, a mixin of `LicenseServer`).

Leader: honour a claim (`_claim`), wait until the source let go (`_check_claims`), tell
the source what to revoke and the new server what to adopt (`_revocations`,
`_adoptions`), forget old claims. Every server: revoke and adopt what the leader's
heartbeat lists, answer the clients waiting for their seats. The tickets themselves:
`claims`; the client path presents them in `server` (`_adopt`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lm_core.engine import claims, drain
from lm_core.engine.effects import Effect, Event, LogUsage, PersistKey, Reply, Send
from lm_core.engine.keytable import KeyEntry, KeyTable
from lm_core.engine.leader import NEVER as _NEVER
from lm_core.engine.leader import ClaimWait, LeaderState
from lm_core.engine.leases import Clocks
from lm_core.engine.messages import (
    Adoption,
    BorrowRequest,
    ClaimRecord,
    ClientHeartbeat,
    Deny,
    LicenseRow,
    Request,
    ServerHeartbeat,
)
from lm_core.engine.tables import DistributionTable

if TYPE_CHECKING:
    from lm_core.engine.server import _M, _WaitingClaim


class SeatMoves:
    """Fail-over claims, leader and follower side (see the module docstring)."""

    if TYPE_CHECKING:  # what this mixin uses of `LicenseServer` (and of its other mixin)
        _grace_allowed: dict[str, int]
        adopted: dict[str, None]
        allowed: dict[str, int]
        claim_key: bytes
        clocks: Clocks
        expecting: dict[tuple[str, str], tuple[int, float]]
        id: str
        keys: KeyTable
        leader_id: str | None
        peers: tuple[str, ...]
        quorum: int
        revoked: dict[str, None]
        size: int
        table: DistributionTable
        term: int
        waiting: dict[tuple[str, str], _WaitingClaim]

        def _allocate(
            self,
            now: float,
            lic: str,
            target: str,
            want: int,
            failover: bool,
            out: list[Effect],
            gather: int = 0,
        ) -> int: ...
        def _deny(
            self, msg: Request | ClientHeartbeat, reason: str, detail: str, retry_after: float = 0.0
        ) -> Deny: ...
        def _grant(
            self, now: float, token: str, msg: Request | ClientHeartbeat, out: list[Effect]
        ) -> None: ...
        def _heartbeat(self, now: float, peer: str, up: tuple[str, ...]) -> ServerHeartbeat: ...
        def _lead(self) -> LeaderState: ...
        def _maybe_fenced(self, now: float, since: float) -> bool: ...
        def _limit(self, lic: str) -> int: ...
        def _msg(self, cls: type[_M], **fields: Any) -> _M: ...
        def _no_lease_why(self, now: float) -> str: ...
        def _not_serving(self, now: float) -> tuple[str, str] | None: ...
        def _note(self, now: float, kind: str, text: str, **data: Any) -> Event: ...
        def _serving_lease(self, now: float) -> bool: ...
        def _table_changed(
            self, now: float, out: list[Effect], lic: str | None = None, *, bump: bool = True
        ) -> None: ...
        def _up(self, now: float) -> list[str]: ...

    def _revocations(self, peer: str, seq: int) -> tuple[ClaimRecord, ...]:
        """The honoured claims on `peer`'s tickets, sent in heartbeat `seq`."""
        ld = self._lead()
        prefix = peer + ":"
        out = tuple(c for k, c in self.table.claims.items() if k.startswith(prefix))
        sent = ld.revoke_seq.setdefault(peer, {})
        for c in out:
            sent.setdefault(c.key, seq)
        return out

    def _unrevoked(
        self, peer: str, seq: int, rows: tuple[LicenseRow, ...]
    ) -> tuple[LicenseRow, ...]:
        """A follower's rows as they will be once it applies the claims on its tickets
        that its ACK of heartbeat `seq` does not reflect yet: its allowance lowers by
        their seats (its in-use count is left as reported: over-counting is safe)."""
        ld = self._lead()
        sent = ld.revoke_seq.get(peer, {})
        pending: dict[str, int] = {}
        prefix = peer + ":"
        for k, c in self.table.claims.items():
            if k.startswith(prefix) and sent.get(k, seq + 1) > seq:
                pending[c.license] = pending.get(c.license, 0) + c.count
        if not pending:
            return rows
        return tuple(
            replace(r, allowed=max(0, r.allowed - pending.get(r.license, 0))) for r in rows
        )

    def _revoke(self, now: float, records: tuple[ClaimRecord, ...], out: list[Effect]) -> None:
        """Seats I granted moved away with their clients (L2): those entries end (held
        back until their claim hold) and my allowance drops by their seats, once per
        ticket (the leader repeats the list in every heartbeat until the claims are
        forgotten)."""
        prefix = self.id + ":"
        listed: dict[str, None] = {}
        for rec in records:
            serial = rec.key[len(prefix) :]
            if not rec.key.startswith(prefix) or not serial.isdigit():
                continue
            listed[rec.key] = None
            if rec.key in self.revoked:
                continue
            if rec.license in self.allowed:
                self.allowed[rec.license] = max(0, self.allowed[rec.license] - rec.count)
            self._let_go(now, self.keys.by_serial(int(serial)), rec, out)
        self.revoked = listed

    def _let_go_own(self, now: float, entry: KeyEntry, rec: ClaimRecord, out: list[Effect]) -> None:
        """Leading: a claim on my own ticket moves its seat at once (the leader that would
        revoke it is me): the entry ends, and my allowance drops by its seats."""
        a = self._lead().ledger.get(self.id, rec.license)
        a.sent = a.peak = max(0, a.sent - rec.count)
        self._let_go(now, entry, rec, out)
        # a later leader lists this claim in its heartbeats: applied already
        self.revoked[rec.key] = None

    def _let_go(
        self, now: float, entry: KeyEntry | None, rec: ClaimRecord, out: list[Effect]
    ) -> None:
        """The seats of `rec`'s ticket (my `entry`, if I still have it) moved away."""
        if rec.license in self._grace_allowed:
            # what I held back for my restart grace included those seats too
            self._grace_allowed[rec.license] = max(0, self._grace_allowed[rec.license] - rec.count)
        if entry is None:
            return
        out.append(LogUsage("moved", entry.client_id, entry.license, entry.count, rec.key,
                            identity=entry.identity))  # fmt: skip
        if entry.claim_hold > now:
            entry.revoked = True
            # Counted (held back) until its claim hold ends: I may have renewed it since
            # the ticket was claimed, and if the leader that honoured the claim falls
            # before crediting it, no adopter keeps the seat for its client -- my count
            # is then all that covers the client's lease.
            self.keys.hold(entry)
        else:
            self.keys.remove(entry.client_id, entry.license)
            out.append(PersistKey(entry.client_id, entry.license, None))

    def _take_adoptions(self, now: float, adopt: tuple[Adoption, ...], echo: float) -> None:
        """Seats that came with their clients' claims (L2): kept for those clients, once
        per claim (the leader repeats the list until each hold ends). A heartbeat that
        reaches me so long after the ACK it echoes (`echo`) that I may have been fenced
        meanwhile (queued while I was paused or cut off) brings no seats: the fence
        handed out all I had."""
        listed: dict[str, None] = {}
        for a in adopt:
            listed[a.key] = None
            if a.key not in self.adopted and not self._maybe_fenced(now, echo):
                self._claim_arrived(now, a.client_id, a.license, a.count, a.hold)
        self.adopted = listed

    def _drop_claims_for(self, server: str) -> None:
        """Leader: `server` is fenced (its reservations are gone with its holds): claims
        that would bring it seats lapse, and it is no longer told to keep any."""
        ld = self._lead()
        ld.claim_waits = [w for w in ld.claim_waits if w.target != server]
        ld.credited = [w for w in ld.credited if w.target != server]

    def _claim_as_leader(self, now: float, msg: ClientHeartbeat, out: list[Effect]) -> None:
        """Leading: honour the claim myself; refused, find seats as for any fail-over."""
        lic, count = msg.license, msg.count
        why = self._claim(now, self.id, msg.sender, lic, count, msg.ticket, out)
        if why:
            out.append(self._note(now, "claim", f"claim of {msg.sender} refused: {why}"))
            self._allocate(now, lic, self.id, count, True, out)
            self._retry_waiting(now, out)

    def _claim_via_leader(self, now: float, msg: ClientHeartbeat, out: list[Effect]) -> None:
        """Not leading: the leader judges the claim (`_on_borrow_request`)."""
        if not self.leader_id:
            return
        ask = self._msg(
            BorrowRequest,
            license=msg.license,
            count=msg.count,
            failover=True,
            claim=msg.ticket,
            client_id=msg.sender,
        )
        out.append(Send(self.leader_id, ask))

    def _retry_waiting(self, now: float, out: list[Effect]) -> None:
        """Answer the fail-over clients whose seats have arrived."""
        if not self.waiting or self._not_serving(now) is not None:
            return
        if drain.is_drained(self.table, self.id):
            return  # a drained server adopts nothing: the waiting clients walk on
        for key, w in list(self.waiting.items()):
            lic, count = w.msg.license, w.msg.count
            if self.keys.get(w.msg.sender, lic) is not None:
                del self.waiting[key]
                continue
            if self._room(now, lic, w.msg.sender, count):
                del self.waiting[key]
                self._grant(now, w.token, w.msg, out)

    def _room(self, now: float, lic: str, client: str, count: int) -> bool:
        """Can `client` get `count` seats here now, seats kept for others aside?"""
        if self._expected(now, lic, client, count):
            return True
        used = self.keys.in_use(lic) + self._spoken_for(now, lic, client)
        return used + count <= self._limit(lic)

    def _expected(self, now: float, lic: str, client: str, count: int) -> bool:
        """Did `client`'s claim bring its `count` seats here? They are its own, whatever
        my allowance says: the leader counts them in my hold on top of the seats I had
        in use (`credit` and `_unadopted`), so an adopter serving more than its
        allowance (a lowered row) still takes its claimants back."""
        kept = self.expecting.get((client, lic))
        return kept is not None and kept[0] >= count and now < kept[1]

    def _spoken_for(self, now: float, lic: str, client: str) -> int:
        """Seats that a claim moved here for another fail-over client, who has not
        taken them yet: kept for it, not for others."""
        if not self.expecting:
            return 0
        return sum(
            n
            for (c, name), (n, until) in self.expecting.items()
            if name == lic and c != client and now < until
        )

    def _claim_arrived(
        self, now: float, client: str, lic: str, count: int, hold_for: float
    ) -> None:
        """The seats of `client`'s claim are mine now: they are kept for that client
        (not for another waiting one), whether it still waits or comes back later, until
        the claim window ends: a late duplicate of its fail-over heartbeat may have made
        the claim while the client went back to its old server, which may renew it
        until then."""
        if self.keys.get(client, lic) is not None:
            return
        self.expecting[(client, lic)] = (count, now + hold_for)

    def _expire_waiting(self, now: float, out: list[Effect]) -> None:
        for key, w in list(self.waiting.items()):
            if now >= w.deadline:
                del self.waiting[key]
                detail = f"{self.id}: the seats of this claim have not arrived yet"
                out.append(Reply(w.token, self._deny(w.msg, "no_seats", detail, 0.0)))
                out.append(LogUsage("deny", w.msg.sender, w.msg.license, w.msg.count, "no_seats",
                                    identity=w.msg.identity))  # fmt: skip

    def _claim(
        self,
        now: float,
        target: str,
        client_id: str,
        lic: str,
        count: int,
        text: str,
        out: list[Effect],
    ) -> str:
        """Leader: honour a fail-over claim for `target`; "" if honoured (the seats reach
        `target` once the claim is durable on a majority), else why not (see `claims`)."""
        ld = self._lead()
        ledger = ld.ledger
        try:
            t = claims.read(self.claim_key, text, client_id, lic)
        except claims.ClaimError as err:
            return str(err)
        state = self.table.licenses.get(lic)
        if state is None:
            return f"no license {lic!r}"
        if t.count != count:
            return f"ticket is for {t.count} seats, not {count}"
        mine = t.server == self.id
        if t.server == target or not (mine or t.server in self.peers):
            return f"ticket of {t.server!r} cannot move seats to {target}"
        if t.key in self.table.claims:
            return f"ticket {t.key} was used before"
        if t.server in ledger.fenced:
            return f"{t.server} is fenced: its seats moved already"
        # A granting server that may still grant must let go of the seats first: the
        # claim waits for its ACK of the heartbeat that revokes them (or for its lease
        # to run out), within the ticket's claim window (see `_check_claims`). My own
        # ticket I judge by my key table, and let go of at once (`_let_go_own`).
        source_done = (
            mine
            or now >= ld.lease_granted.get(t.server, -_NEVER)
            or drain.settled(self.table, t.server, self._acked_table(t.server))
        )
        if not self._serving_lease(now):
            return self._no_lease_why(now)
        if not ledger.known.get(target, False):
            return f"{target} has not reported to this leader yet"
        own = self.keys.by_serial(t.serial) if mine else None
        if mine:
            if own is None or own.revoked or (own.client_id, own.license) != (client_id, lic):
                # released or expired: its seat may be someone else's by now
                return f"ticket {t.key}: no such seat held here"
            until: float | str = now + self.clocks.claim_window
        else:
            until = self._ticket_until(t)
        if isinstance(until, str):
            return until
        if now >= until:
            return f"ticket {t.key} is past its claim window"
        from_row = min(state.rows.get(t.server, 0), count)
        from_free = min(state.free, count - from_row)
        if from_row:
            self.table.move(lic, t.server, target, from_row)
        if from_free:
            self.table.move(lic, None, target, from_free)
        if count - from_row - from_free > 0:
            # the granting server served beyond its row (a push or a distribution change
            # lowered it under its in-use count): the rest of the seats are spare in
            # other rows; without them the adopter's row would pull its allowance back
            # below the seats it keeps for the claimant
            self._allocate(now, lic, target, count - from_row - from_free, True, out)
        self.table.claims[t.key] = ClaimRecord(key=t.key, term=t.term, license=lic, count=count)
        if own is not None:
            self._let_go_own(now, own, self.table.claims[t.key], out)
        else:
            # what the granting server holds is unknown from now until it reports again
            # (its report then lacks the seats claimed away, or the leader discounts them)
            ledger.forget(t.server)
        ledger.reserve(target, lic, count)
        out.append(
            self._note(
                now,
                "claim",
                f"{target} adopts {client_id}: {count} of {lic} from {t.server}",
                license=lic,
                server=target,
                source=t.server,
                count=count,
            )
        )
        self._table_changed(now, out, lic)
        ld.claim_waits.append(
            ClaimWait(
                cfg=self.table.cfg,
                target=target,
                license=lic,
                count=count,
                key=t.key,
                client_id=client_id,
                # the client's lease from t.server ends by then, whatever ticket it
                # showed: t.server renewed nothing after its renew window (mine: I
                # renew it no more from now)
                until=now + self.clocks.claim_window
                if mine
                else max(ld.lease_granted.get(t.server, -_NEVER), ld.became_leader_at)
                + self.clocks.claim_window,
                source=t.server,
                ticket_until=until,
                source_done=source_done,
            )
        )
        if not source_done:
            # the claim waits for the granting server's ACK of a heartbeat that lists
            # the revoke: send it that heartbeat now, not at the next round
            out.append(Send(t.server, self._heartbeat(now, t.server, tuple(self._up(now)))))
        self._check_claims(now, out)
        return ""

    def _acked_table(self, peer: str) -> tuple[int, int] | None:
        """The config version `peer` last ACKed to this leader."""
        acked = self._lead().peer(peer).acked_cfg
        return None if acked is None else acked[1]

    def _ticket_until(self, t: claims.Ticket) -> float | str:
        """When a ticket's claim window ends on my clock (by then the client's lease
        from the granting server has surely ended), or why it cannot be judged."""
        ld = self._lead()
        c = self.clocks
        if t.term == self.term:
            sent = ld.hb_times.get(t.seq)
            if sent is None:
                return f"ticket of heartbeat {t.seq} is too old"
            return sent + c.claim_window
        term = ld.prev_heard[0]
        if t.term != term:
            return f"ticket of term {t.term}, not of the previous leader's term {term}"
        # the latest heartbeat of that term I applied that is not newer than the ticket's
        # lease source left the previous leader after my ACK stamped its echo: so did the
        # ticket's lease source
        echo = max((e for q, e in ld.prev_log.items() if q <= t.seq), default=None)
        if echo is None:
            return f"ticket of heartbeat {t.seq} of term {t.term} is too old"
        return echo + c.claim_window

    def _check_claims(self, now: float, out: list[Effect]) -> None:
        """Leader: credit the claims a majority now holds durably."""
        ld = self._lead()
        if not ld.claim_waits:
            return
        ledger = ld.ledger
        keep: list[ClaimWait] = []
        up = tuple(self._up(now))
        for w in ld.claim_waits:
            if not w.source_done and not self._source_let_go(now, w):
                if now >= w.ticket_until:
                    # the granting server may have given the seats to someone else once
                    # its hold on the ticket's entry ended: the claim moves nothing
                    ledger.unreserve(w.target, w.license, w.count)
                    out.append(self._note(now, "claim", f"claim of {w.client_id} lapsed: "
                                          f"{w.source} did not let go in time"))  # fmt: skip
                    continue
                keep.append(w)
                continue
            have = 1 + sum(
                1
                for s in self.peers
                if (acked := ld.peer(s).acked_cfg) is not None and acked[1] >= w.cfg
            )
            if have < self.quorum:
                keep.append(w)
                continue
            if ledger.get(w.target, w.license).reserved >= w.count:
                ledger.credit(w.target, w.license, w.count)
                # in use for its client from now on: not free for a borrow while the
                # target's reports predate the heartbeat that carries it
                ledger.get(w.target, w.license).in_use += w.count
            out.append(
                self._note(
                    now,
                    "claim",
                    f"claim of {w.client_id} durable on {have}/{self.size}: "
                    f"{w.count} of {w.license} now {w.target}'s",
                )
            )
            if w.target == self.id:
                hold = self.clocks.observed(max(0.0, w.until - now))
                self._claim_arrived(now, w.client_id, w.license, w.count, hold)
                self._retry_waiting(now, out)
                continue
            # The seats travel in the adopter's heartbeat, reserved for the client in the
            # same message that raises the allowance (`ServerHeartbeat.adopt`): a separate
            # grant could be lost or overtaken, and the raised allowance alone would show
            # the seats as free to any waiting client while the claimant's lease runs.
            ld.credited.append(w)
            out.append(Send(w.target, self._heartbeat(now, w.target, up)))
        ld.claim_waits = keep

    def _source_let_go(self, now: float, w: ClaimWait) -> bool:
        """Has the granting server of a claim let go of its seats, in time? It ACKed a
        heartbeat that listed the claim in `revoke` (it applied the revoke: dropped the
        entry, lowered its allowance), or every lease it had from me ran out. Either must
        happen before the ticket's claim window ends: until then the server still counts
        the entry (its claim hold), so it cannot have given the seats to another client."""
        ld = self._lead()
        if now >= w.ticket_until:
            return False
        sent = ld.revoke_seq.get(w.source, {}).get(w.key)
        if now >= ld.lease_granted.get(w.source, -_NEVER) or (
            sent is not None and ld.peer(w.source).acked_seq >= sent
        ):
            w.source_done = True
            # whatever it renewed until then ends within a claim window from now
            w.until = max(w.until, now + self.clocks.claim_window)
        return w.source_done

    def _adoptions(self, now: float, peer: str) -> tuple[Adoption, ...] | None:
        """The credited claims `peer` must keep for their clients, for its heartbeat."""
        ld = self._lead()
        if not ld.credited:
            return None
        ld.credited = [w for w in ld.credited if now < w.until]
        mine = [w for w in ld.credited if w.target == peer]
        for w in mine:
            if not w.first_seq:
                w.first_seq = ld.hb_seq  # this heartbeat's
        out = tuple(
            Adoption(
                key=w.key,
                client_id=w.client_id,
                license=w.license,
                count=w.count,
                hold=self.clocks.observed(w.until - now),
            )
            for w in mine
        )
        return out or None

    def _unadopted(
        self, peer: str, seq: int, rows: tuple[LicenseRow, ...]
    ) -> tuple[LicenseRow, ...]:
        """A follower's rows counting the claimed seats it keeps for their clients that
        its ACK of heartbeat `seq` does not reflect yet (it reports them in use once it
        has them)."""
        pending: dict[str, int] = {}
        for w in self._lead().credited:
            if w.target == peer and (not w.first_seq or seq < w.first_seq):
                pending[w.license] = pending.get(w.license, 0) + w.count
        if not pending:
            return rows
        return tuple(replace(r, in_use=r.in_use + pending.get(r.license, 0)) for r in rows)

    def _prune_claims(self, now: float) -> None:
        """Forget honoured claims whose tickets can no longer be presented."""
        ld = self._lead()
        if not self.table.claims or now < ld.became_leader_at + self.clocks.claim_window:
            return
        for k in [k for k, c in self.table.claims.items() if c.term < self.term]:
            del self.table.claims[k]
