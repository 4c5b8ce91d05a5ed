"""The leader's handlers (`Leading`, a mixin of `LicenseServer`): starting and stopping
leading, heartbeats and ACKs, the majority lease, rebalancing allowances, pending admin
changes, distribution syncs, and where the leader allocates seats to a borrowing server.

Only a leading server runs them (the role tables in `server` route to them); the state
they keep is `leader.LeaderState`. Fail-over claims are in `seat_moves`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lm_core.engine.borrowing import plan_borrow
from lm_core.engine.effects import Effect, Event, PersistState, Reply, Send
from lm_core.engine.keytable import KeyTable
from lm_core.engine.leader import NEVER as _NEVER
from lm_core.engine.leader import LeaderState, PendingAdmin
from lm_core.engine.leases import Clocks
from lm_core.engine.messages import (
    MAX_COUNT,
    AdminReply,
    Adoption,
    Allowance,
    BorrowGrant,
    BorrowRequest,
    ClaimRecord,
    DistributionSync,
    ForwardedReply,
    LicenseRow,
    RlfAccept,
    RlfTransfer,
    ServerAck,
    ServerHeartbeat,
)
from lm_core.engine.rlf import Rlf
from lm_core.engine.roles import Role
from lm_core.engine.tables import DistributionTable, Ledger

if TYPE_CHECKING:
    from lm_core.engine.server import _M


class Leading:
    """What a server does while it leads (see the module docstring)."""

    if TYPE_CHECKING:  # what this mixin uses of `LicenseServer` (and of its other mixin)
        _rlf_text: str
        allowed: dict[str, int]
        borrow_wait: dict[str, float]
        known_at: float
        check_sent: bool
        clocks: Clocks
        heard: tuple[int, int, float]
        heard_log: dict[int, float]
        id: str
        keys: KeyTable
        last_contact: float
        leader: LeaderState | None
        leader_id: str | None
        lease_src: tuple[int, int]
        lease_src_at: float
        peers: tuple[str, ...]
        pool: str
        quorum: int
        renew_until: float
        rlf: Rlf
        servers: tuple[str, ...]
        size: int
        stepped_down: str
        table: DistributionTable
        term: int

        def _adopt_term(self, term: int, now: float, out: list[Effect]) -> None: ...
        def _adoptions(self, now: float, peer: str) -> tuple[Adoption, ...] | None: ...
        def _become(self, role: Role, now: float, out: list[Effect], why: str) -> None: ...
        def _bump_cfg(self) -> None: ...
        def _cfg_fields(self) -> dict[str, int]: ...
        def _check_claims(self, now: float, out: list[Effect]) -> None: ...
        def _drop_claims_for(self, server: str) -> None: ...
        def _claim(
            self,
            now: float,
            target: str,
            client_id: str,
            lic: str,
            count: int,
            text: str,
            out: list[Effect],
        ) -> str: ...
        def _grace_held(self, now: float, lic: str, in_use: int) -> int: ...
        def _lead(self) -> LeaderState: ...
        def _msg(self, cls: type[_M], **fields: Any) -> _M: ...
        def _note(self, now: float, kind: str, text: str, **data: Any) -> Event: ...
        def _persist(self) -> PersistState: ...
        def _prune_claims(self, now: float) -> None: ...
        def _revocations(self, peer: str, seq: int) -> tuple[ClaimRecord, ...]: ...
        def _spoken_for(self, now: float, lic: str, client: str) -> int: ...
        def _unadopted(
            self, peer: str, seq: int, rows: tuple[LicenseRow, ...]
        ) -> tuple[LicenseRow, ...]: ...
        def _unrevoked(
            self, peer: str, seq: int, rows: tuple[LicenseRow, ...]
        ) -> tuple[LicenseRow, ...]: ...

    def _start_leading(self, now: float, out: list[Effect]) -> None:
        ledger = Ledger(self.id, self.servers)
        # my own allowance is what I had as a follower (or before a restart)
        for lic in self.table.licenses:
            a = ledger.get(self.id, lic)
            # My allowance is what a leader gave me as a follower. What I had before a
            # restart is held (I may have granted it unpersisted) but not mine to grant:
            # I may have been fenced since, and my seats handed to others.
            a.sent = a.peak = self.allowed.get(lic, 0)
            in_use = self.keys.in_use(lic)
            a.grace = self._grace_held(now, lic, in_use)
            a.in_use = in_use + a.grace
            # back from a quick restart with my store (my clients re-adopting their
            # seats): my allowance moves toward my in-use count, raised only from usable
            # seats, as for a restored follower (`Allowance.target`)
            a.restored = in_use > a.sent
        ld = self.leader = LeaderState(
            ledger=ledger,
            became_leader_at=now,
            prev_heard=self.heard,
            prev_log=dict(self.heard_log),
            short=set(self.table.licenses),
        )
        # tickets of terms before the previous leader's can no longer be honoured
        self.table.claims = {
            k: c for k, c in self.table.claims.items() if c.term >= ld.prev_heard[0]
        }
        self._bump_cfg()
        out.append(self._persist())
        for lic in sorted(ld.short):
            self._rebalance(now, lic, out)
        self._broadcast_sync(now, out)
        self._leader_tick(now, out)

    def _drop_leader_state(self, now: float, out: list[Effect]) -> None:
        ld, self.leader = self._lead(), None
        self.allowed = ld.ledger.allowances(self.id)
        # a newer leader may fence me a fence-time after my lease ended
        self.known_at = max(self.known_at, min(now, ld.lease_end))
        for p in ld.pending:
            self._answer_admin(p, False, "leader changed before the change was durable; retry", out)

    def _up(self, now: float) -> list[str]:
        """Servers in contact with this leader (itself included)."""
        ld = self._lead()
        lt = self.clocks.leader_timeout
        return [s for s in self.servers if s == self.id or now - ld.peer(s).last_ack_recv <= lt]

    def _leader_tick(self, now: float, out: list[Effect]) -> bool:
        """Heartbeat round: fence, rebalance, heartbeats; False if I stepped down."""
        ld = self._lead()
        ld.next_hb = now + self.clocks.heartbeat
        if (
            not self._serving_lease(now)
            and now >= max(ld.lease_end, ld.became_leader_at) + self.clocks.stale_lease
        ):
            # cut off from the majority: say so and stand again, rather than call
            # myself leader of a pool that may well have elected another
            ago = "never" if ld.lease_end == -_NEVER else f"{now - ld.lease_end:.1f}s ago"
            why = (
                f"stepped down: no majority lease (lease ended {ago}, "
                f"{len(self._up(now))}/{self.size} servers in contact)"
            )
            self._become(Role.FOLLOWER, now, out, why)
            self.leader_id = None
            self.stepped_down = why
            self.last_contact = now - self.clocks.leader_timeout  # vote for others at once
            self.check_sent = True  # no leader to check on: stand when my turn comes
            return False
        # fencing: servers out of contact long enough that nothing they had is alive;
        # only under a majority lease: without one, I am more likely the one cut off
        fenced_any = False
        for p in self.peers if self._serving_lease(now) else ():
            if p in ld.ledger.fenced:
                continue
            since = max(ld.peer(p).last_ack_recv, ld.became_leader_at)
            if now - since > self.clocks.fence:
                ld.ledger.fence(p)
                self._drop_claims_for(p)
                fenced_any = True
                out.append(self._note(now, "fence", f"{p} fenced (out of contact)", server=p))
        if fenced_any:
            ld.short = set(self.table.licenses)
        for lic in sorted(ld.short):
            self._rebalance(now, lic, out)
        if ld.claim_waits:
            self._check_claims(now, out)  # a granting server's lease may have run out
        up = tuple(self._up(now))
        for p in self.peers:
            out.append(Send(p, self._heartbeat(now, p, up)))
        cutoff = now - self.clocks.history
        if len(ld.hb_times) > 64:
            ld.hb_times = {k: v for k, v in ld.hb_times.items() if v >= cutoff}
        return True

    def _heartbeat(self, now: float, peer: str, up: tuple[str, ...]) -> ServerHeartbeat:
        ld = self._lead()
        ld.hb_seq += 1
        ld.hb_times[ld.hb_seq] = now
        granted = 0.0
        pr = ld.peer(peer)
        echo = pr.last_ack_ts
        if echo > 0 and self._serving_lease(now):
            if not self.rlf.majority_rule:
                granted = self.clocks.server_lease
            else:
                granted = max(
                    0.0,
                    min(self.clocks.server_lease, ld.lease_end - pr.last_ack_recv),
                )
            if granted > 0:
                # the lease runs from the follower's ACK that reached me at
                # last_ack_recv; a follower that stopped ACKing gains nothing from it
                ld.lease_granted[peer] = max(
                    ld.lease_granted.get(peer, -_NEVER),
                    pr.last_ack_recv + self.clocks.observed(granted),
                )
        allowed: tuple[Allowance, ...] | None = None
        if ld.ledger.known.get(peer, False):
            allowed = tuple(
                Allowance(license=lic, count=n) for lic, n in ld.ledger.allowances(peer).items()
            )
        return self._msg(
            ServerHeartbeat,
            seq=ld.hb_seq,
            echo=echo,
            lease=granted,
            up=up,
            rlf_seq=self.rlf.sequence,
            allowed=allowed,
            revoke=self._revocations(peer, ld.hb_seq),
            adopt=self._adoptions(now, peer),
            **self._cfg_fields(),
        )

    def _no_lease_why(self, now: float) -> str:
        """What a leader without a majority lease lacks, in one line (names the gap
        between "in contact" and "lease": contact counts ACKs within leader_timeout, the
        lease needs a heartbeat a majority ACKed within the server lease)."""
        ld = self._lead()
        up = len(self._up(now))
        if ld.lease_end == -_NEVER:
            last = "no majority ACK yet in this term"
        else:
            last = f"last majority ACK {now - ld.lease_end + self.clocks.leader_lease:.1f}s ago"
        return f"no majority lease yet: {up}/{self.size} servers in contact, {last}"

    def _serving_lease(self, now: float) -> bool:
        """Leader: may I grant now (I hold a majority lease, or majority rule is off)?"""
        return not self.rlf.majority_rule or now < self._lead().lease_end

    def _on_ack(self, now: float, sender: str, msg: ServerAck, out: list[Effect]) -> None:
        if msg.term > self.term:
            self._adopt_term(msg.term, now, out)
            out.append(self._persist())
            return
        if msg.term < self.term or not msg.ok:
            return
        ld = self._lead()
        if msg.seq > ld.hb_seq:
            return  # not a heartbeat of this term
        key = (msg.seq, msg.ts)
        pr = ld.peer(sender)
        if key < pr.last_ack_key:
            return  # older than an ACK already taken (reordered or replayed)
        pr.last_ack_key = key
        pr.last_ack_recv = now
        if msg.ts > pr.last_ack_ts:
            pr.last_ack_ts = msg.ts
        if msg.seq > pr.acked_seq:
            pr.acked_seq = msg.seq
        pr.acked_cfg = (msg.rlf_seq, (msg.cfg_term, msg.cfg_version))
        was_known = ld.ledger.known.get(sender, False)
        rows = msg.rows if was_known else self._unrevoked(sender, msg.seq, msg.rows)
        if ld.credited:
            rows = self._unadopted(sender, msg.seq, rows)
        ld.ledger.learn(sender, msg.seq, rows)
        self._update_lease()
        # catch the follower up: RLF first, then the table
        if msg.rlf_seq < self.rlf.sequence:
            self._send_rlf(now, sender, out)
        elif msg.rlf_seq > self.rlf.sequence:
            out.append(Send(sender, self._msg(RlfAccept, rlf_seq=msg.rlf_seq)))
        if (msg.cfg_term, msg.cfg_version) < self.table.cfg and (
            now - pr.last_sync_sent >= self.clocks.heartbeat
        ):
            pr.last_sync_sent = now
            out.append(Send(sender, self._sync()))
        if not was_known:
            ld.short = set(self.table.licenses)
        if ld.short:
            changed: dict[str, None] = {}  # ordered: the engine is deterministic
            for lic in sorted(ld.short):
                changed.update(dict.fromkeys(self._rebalance(now, lic, out)))
            up = tuple(self._up(now))
            for p in changed:
                if p != self.id:
                    out.append(Send(p, self._heartbeat(now, p, up)))
        if ld.pending:
            self._check_pending(now, out)
        if ld.claim_waits:
            self._check_claims(now, out)

    def _update_lease(self) -> None:
        ld = self._lead()
        seqs = sorted((ld.peer(p).acked_seq for p in self.peers), reverse=True)
        need = self.quorum - 1  # the leader acks its own heartbeats
        if need <= 0:
            q = ld.hb_seq
        elif len(seqs) >= need:
            q = seqs[need - 1]
        else:
            return
        sent = ld.hb_times.get(q)
        if q > 0 and sent is not None and sent + self.clocks.leader_lease > ld.lease_end:
            ld.lease_end = sent + self.clocks.leader_lease
            ld.lease_q = q
            self.lease_src = (self.term, q)
            self.lease_src_at = sent
            self.renew_until = max(self.renew_until, ld.lease_end + self.clocks.renew_window)

    def _rebalance(self, now: float, lic: str, out: list[Effect]) -> list[str]:
        """Move allowances toward the table for one license; returns changed servers."""
        ld = self._lead()
        state = self.table.licenses.get(lic)
        if state is None:
            ld.short.discard(lic)
            return []
        in_use = self.keys.in_use(lic)
        ld.ledger.set_self_in_use(
            lic,
            in_use + self._grace_held(now, lic, in_use) + self._spoken_for(now, lic, ""),
        )
        before = ld.ledger.get(self.id, lic).sent
        # Raise allowances only under a majority lease: without one a newer leader may
        # exist, and the servers this one fenced may be serving under it (their seats
        # are not free). Decreases always apply; what stays short is retried each tick.
        up = self._up(now) if self._serving_lease(now) else []
        changed, short = ld.ledger.rebalance(state, ld.hb_seq + 1, up)
        if short:
            ld.short.add(lic)
        else:
            ld.short.discard(lic)
        if ld.ledger.get(self.id, lic).sent > before:
            out.append(self._persist())
        return changed

    def _check_pending(self, now: float, out: list[Effect]) -> None:
        ld = self._lead()
        if not ld.pending:
            return
        keep: list[PendingAdmin] = []
        for p in ld.pending:
            have = 1 + sum(
                1
                for s in self.peers
                if (acked := ld.peer(s).acked_cfg) is not None
                and acked[0] >= p.rlf_seq
                and acked[1] >= p.cfg
            )
            if have >= self.quorum:
                data = dict(p.data, durable_on=have)
                self._answer_admin(replace(p, data=data), True, p.message, out)
            elif now >= p.deadline:
                self._answer_admin(
                    p,
                    False,
                    f"not durable on a majority in time ({have}/{self.size} servers hold it)",
                    out,
                )
            else:
                keep.append(p)
        ld.pending = keep

    def _answer_admin(self, p: PendingAdmin, ok: bool, message: str, out: list[Effect]) -> None:
        reply = self._msg(
            AdminReply, request_id=p.request_id, ok=ok, message=message, data=dict(p.data)
        )
        if p.via is None:
            out.append(Reply(p.token, reply))
        else:
            out.append(Send(p.via, self._msg(ForwardedReply, token=p.token, reply=reply)))

    def _sync(self) -> DistributionSync:
        return self.table.to_sync(
            pool=self.pool, sender=self.id, term=self.term, rlf_seq=self.rlf.sequence
        )

    def _broadcast_sync(self, now: float, out: list[Effect]) -> None:
        """DISTRIBUTION_SYNC to every follower (down ones get it when they ACK again)."""
        ld = self._lead()
        sync = self._sync()
        for p in self.peers:
            ld.peer(p).last_sync_sent = now
            out.append(Send(p, sync))

    def _send_rlf(self, now: float, peer: str, out: list[Effect]) -> None:
        pr = self._lead().peer(peer)
        if now - pr.last_rlf_sent < self.clocks.leader_timeout:
            return
        pr.last_rlf_sent = now
        out.append(Send(peer, self._msg(RlfTransfer, rlf_text=self._rlf_text)))

    def _table_changed(
        self, now: float, out: list[Effect], lic: str | None = None, *, bump: bool = True
    ) -> None:
        """After the leader changed the table: bump, persist, sync, rebalance."""
        ld = self._lead()
        self._prune_claims(now)
        if bump:
            self._bump_cfg()
            out.append(self._persist())
        self._broadcast_sync(now, out)
        lics = [lic] if lic is not None else list(self.table.licenses)
        changed: dict[str, None] = {}  # ordered: the engine is deterministic
        for name in lics:
            ld.short.add(name)
            changed.update(dict.fromkeys(self._rebalance(now, name, out)))
        up = tuple(self._up(now))
        for p in changed:
            if p != self.id:
                out.append(Send(p, self._heartbeat(now, p, up)))

    # ---------------------------------------------------------------- borrowing

    def _allocate(
        self,
        now: float,
        lic: str,
        target: str,
        want: int,
        failover: bool,
        out: list[Effect],
        gather: int = 0,
    ) -> int:
        """Claims 5, 14, 15: find `want` seats of `lic` for `target`; returns seats moved."""
        ld = self._lead()
        state = self.table.licenses.get(lic)
        if state is None or want <= 0:
            return 0
        ledger = ld.ledger
        moves = plan_borrow(
            target=target,
            want=want,
            failover=failover,
            leader=self.id,
            order=self.servers,
            rows=state.rows,
            free=state.free,
            # seats kept for claimants (arrived or on their way) are in use, not spare
            leader_in_use=self.keys.in_use(lic)
            + self._spoken_for(now, lic, "")
            + ledger.get(self.id, lic).reserved,
            threshold=self.rlf.borrowing_threshold,
            fenced=ledger.fenced,
            up=set(self._up(now)) if failover or gather > 0 else set(),
            in_use_of=lambda s: ledger.get(s, lic).in_use + ledger.get(s, lic).reserved,
            drained=self.table.drained,
            gather=gather,
        )
        for m in moves:
            self.table.move(lic, m.source, target, m.count)
        total = sum(m.count for m in moves)
        if total:
            where = ", ".join(f"{m.count} from {m.source or 'free pool'}" for m in moves)
            out.append(
                self._note(
                    now,
                    "borrow",
                    f"{target} borrows {total} of {lic}: {where}",
                    license=lic,
                    server=target,
                    count=total,
                )
            )
            self._table_changed(now, out, lic)
        return total

    def _on_borrow_request(
        self, now: float, sender: str, msg: BorrowRequest, out: list[Effect]
    ) -> None:
        if msg.term != self.term:
            return
        if not 0 < msg.count <= MAX_COUNT:
            return
        if msg.claim:
            why = self._claim(now, sender, msg.client_id, msg.license, msg.count, msg.claim, out)
            if not why:
                return  # the BorrowGrant goes out once the claim is durable
            out.append(self._note(now, "claim", f"claim of {msg.client_id} refused: {why}"))
        got = self._allocate(
            now, msg.license, sender, msg.count, msg.failover, out, gather=msg.gather
        )
        out.append(
            Send(
                sender,
                self._msg(
                    BorrowGrant,
                    license=msg.license,
                    count=got,
                    detail="" if got else "no seats free in the pool now",
                    client_id=msg.client_id,
                ),
            )
        )

    def _borrow_as_leader(
        self, now: float, lic: str, want: int, failover: bool, out: list[Effect], gather: int
    ) -> None:
        self._allocate(now, lic, self.id, want, failover, out, gather)

    def _borrow_as_follower(
        self, now: float, lic: str, want: int, failover: bool, out: list[Effect], gather: int
    ) -> None:
        if not self.leader_id:
            return
        if now < self.borrow_wait.get(lic, -_NEVER):
            return
        self.borrow_wait[lic] = now + self.clocks.retry_after
        out.append(
            Send(
                self.leader_id,
                self._msg(BorrowRequest, license=lic, count=want, failover=failover, gather=gather),
            )
        )
