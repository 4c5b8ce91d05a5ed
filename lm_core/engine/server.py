"""`LicenseServer`: one pool member as a deterministic state machine.

Theory of operation
-------------------
Doors: ``handle(now, sender, msg)`` and ``tick(now)`` in, a list of effects out (see
`effects`: persist before send). ``now`` is this server's own monotonic clock. Nothing
here reads a clock, a socket or a random generator.

Roles (`Role`; every change goes through `_become`, which checks `TRANSITIONS`):
STARTING (just up, listening for a leader), FOLLOWER, CANDIDATE (pre-vote, then vote),
LEADER, DISASSOCIATED (cannot reach the leader that a majority follows: serves nothing,
keeps trying to rejoin). What differs between roles is a `_Steps` table per role
(`_STEPS`: a handler per message type, the role's timers, and each point of the client
path where roles differ), which `_become` swaps the way raft swaps `step` and `tick`: no
handler tests the role.

Terms and votes (Raft-like). Every server message carries the sender's term; a higher
term makes the receiver adopt it (persisted) and follow; a lower one is refused. A
server that heard no heartbeat for ``leader_timeout`` sends LEADER_CHECK, then after
``(rank + 1) * heartbeat_interval`` more stands for election: first a pre-vote (nobody
changes term), then a real vote in ``term + 1``. Rank is the position in the RLF's
leader-priority list, so when several start together the highest priority stands first
and wins; a lone starter stands when its start-up window ends ("first server up
leads"). A voter grants at most one vote per term (term and vote persisted before the
reply), only to a candidate whose (RLF sequence, config version) is at least its own
(S6), and never while it hears from a live leader (leader stickiness: a cut-off server
cannot depose a healthy leader; it is told who leads and disassociates).

Leases (S3, formulas in `leases`). The leader's lease runs from the *send* time of a
heartbeat a majority has ACKed. Each heartbeat echoes the follower's own clock reading
from its last ACK; the follower may serve until ``echo + granted`` on its own clock,
where ``granted`` is what is left of the leader's lease. So a follower's lease always
lies inside its leader's, and a delayed heartbeat grants nothing new. Only a server
holding a lease issues or renews authorizations (a leader with majority rule off holds
one always).

Allowances and fencing (S1/S2, see `tables`). The distribution table is the target;
each server serves only up to the allowance the leader sent it. Seats move away from a
server only once it ACKed the lower allowance, or once it is *fenced*: out of contact
for longer than a server lease plus a client keep-time (plus drift margins) since
max(its last ACK, the leader's election), when nothing it granted can still be alive.
A new leader raises nobody until every server ACKed or was fenced, and a leader raises
nobody while it holds no majority lease (a newer leader may exist, under which the
servers it fenced still serve: their seats are not free).

Config versions (S6). The distribution table (with codes added at run time) has a
version ``(cfg_term, cfg_version)``; every change bumps it (a new leader bumps it in its
own term first, so its table wins over any unacknowledged one). Followers persist each
DISTRIBUTION_SYNC, then ACK the version. An admin change is answered "done" only once
a majority holds its version durably. Followers forward admin operations to the leader.

Releases (S1). A RELEASE older (by request id) than the newest request its key-table
entry was granted or renewed by is stale: the client sent it before a later REQUEST it
now holds under, so it frees nothing (the id of a renewing REQUEST is persisted).

Where the rest lives. The roles and their legal moves: `roles`. Whether to grant a vote:
`elections.judge_vote`. What the leader does (heartbeats, ACKs, the majority lease,
rebalancing, pending admin changes, syncs, allocating seats to a borrower): the `Leading`
mixin in `leading`; leader-only state (ledger, heartbeat and lease bookkeeping, pending
admin changes, claim waits, one `Progress` per peer) is a `leader.LeaderState` that
`_become(LEADER)` creates and a step-down drops; `_lead()` returns it or raises
`EngineBug`. Where seats move when a server borrows: `borrowing.plan_borrow`; where they
move with their clients on fail-over (claims, revocations, adoptions, both sides): the
`SeatMoves` mixin in `seat_moves`, with the tickets in `claims`. Admin operations,
license codes and pushed RLFs are checked in `admin`; the status is built in `status`;
every duration comes from `leases.Clocks`. This module keeps the doors, the dispatch
(`_Steps`), the role transitions, elections, the follower's side and the client path.

Restart (S4). A server that comes up with persisted state issues nothing new for one
client keep-time, re-adopts clients that heartbeat back in, and reports to the leader
at least the allowance it had before the crash as in use, so seats it may have granted
without persisting them are not handed out elsewhere.
"""

from __future__ import annotations

import datetime
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from lm_core.engine import claims, drain, membership
from lm_core.engine.admin import Refused, check_admin, check_code, check_rlf
from lm_core.engine.binding import Binding
from lm_core.engine.effects import (
    Effect,
    Event,
    LogUsage,
    Persisted,
    PersistKey,
    PersistState,
    Reply,
    Send,
)
from lm_core.engine.elections import Ballot, judge_vote
from lm_core.engine.identity import identity_or_none
from lm_core.engine.keytable import KeyEntry, KeyTable
from lm_core.engine.leader import LeaderState, PendingAdmin
from lm_core.engine.leading import Leading
from lm_core.engine.leases import Clocks
from lm_core.engine.limits import (
    EVENT_TEXT_MAX,
    clip_text,
)
from lm_core.engine.messages import (
    MAX_COUNT,
    AddAllocations,
    AddLicenseCode,
    AdminReply,
    Authorize,
    BorrowGrant,
    BorrowRequest,
    ChangeDistribution,
    ClientHeartbeat,
    Deny,
    DistributionSync,
    DrainServer,
    ForwardedAdmin,
    ForwardedReply,
    LeaderCheck,
    LicenseRow,
    Message,
    Reclaim,
    Release,
    Released,
    Request,
    RlfAccept,
    RlfOffer,
    RlfTransfer,
    ServerAck,
    ServerAddress,
    ServerHeartbeat,
    ServerUp,
    ServerUpReply,
    StatusReply,
    StatusRequest,
    UpdateRlf,
    VoteReply,
    VoteRequest,
)
from lm_core.engine.rlf import Rlf, parse_rlf, render_rlf, verify_rlf
from lm_core.engine.roles import TRANSITIONS, Role
from lm_core.engine.seat_moves import SeatMoves
from lm_core.engine.status import server_status
from lm_core.engine.status_types import ServerStatus
from lm_core.engine.tables import DistributionTable, Ledger, threshold_want
from lm_core.engine.vocab import CONFIG_CHANGES
from lm_core.errors import LmError

STATE_FORMAT = 1
_NEVER = float("inf")
_M = TypeVar("_M", bound=Message)


class EngineBug(Exception):
    """The engine reached a state its rules forbid: a bug, raised (never hidden)."""


@dataclass(slots=True)
class _WaitingClaim:
    """A fail-over client whose answer waits for the seats its claim moves here."""

    token: str
    msg: ClientHeartbeat
    deadline: float


_SERIAL_BLOCK = 1024


class LicenseServer(Leading, SeatMoves):
    """One pool member (see the module docstring)."""

    def __init__(
        self,
        server_id: str,
        rlf: Rlf,
        *,
        now: float,
        today: datetime.date,
        persisted: Persisted | None = None,
        claim_key: bytes = b"",
        serial_base: int | None = None,
    ) -> None:
        verify_rlf(rlf)
        if server_id not in rlf.server_ids:
            raise LmError(f"server {server_id!r} is not in pool {rlf.pool!r}")
        self.id = server_id
        self.claim_key = claim_key
        # Serials must never repeat, not even after a server lost its disk: a fresh
        # incarnation starts at a base the runtime draws at random (or, by default, one
        # derived from its start time); a restart with its disk continues its blocks.
        if serial_base is None:
            serial_base = 1 + int(abs(now) * 1000) % 2**40
        self.serial = self.serial_block = serial_base
        self.renew_until = -_NEVER
        self.lease_src = (0, 0)  # (term, heartbeat seq) my current lease came from
        self.lease_src_at = -_NEVER  # when that heartbeat reached me (a leader: sent it)
        self.heard = (0, 0, -_NEVER)  # last leader heartbeat applied: (term, seq, echo)
        # the echoes of the heartbeats of term heard[0] applied lately: seq -> echo (my
        # own ACK time that the leader had received before it sent that heartbeat)
        self.heard_log: dict[int, float] = {}
        self.waiting: dict[tuple[str, str], _WaitingClaim] = {}
        self.revoked: dict[str, None] = {}  # claim keys of my tickets already applied
        # the latest moment a leader surely still counted my seats (my last ACK, or the
        # end of my own leader lease): no fence of mine falls before a fence-time later
        self.known_at = -_NEVER
        self.adopted: dict[str, None] = {}  # claim keys credited to me, already kept
        self.expecting: dict[tuple[str, str], tuple[int, float]] = {}  # see _spoken_for
        self.stepped_down = ""  # why this server left the leader role, until it follows
        self.removed = ""  # why this server is no longer a member (a newer RLF dropped it)
        self.heard_peers: set[str] = set()  # peers that sent me anything since I started
        self.reclaimed: dict[tuple[str, str], tuple[float, str]] = {}
        # V1: my identity and those present (me + peers on live links); see binding.py
        self.identity = ""
        self.present_ids: frozenset[str] = frozenset()
        self.binding = Binding()
        self.today = today
        self._today_iso = today.isoformat()
        self._events: deque[tuple[float, str, str]] = deque(maxlen=64)
        self.term = 0
        self.voted_for: str | None = None
        self._steps = _STEPS[Role.STARTING]  # what I do in my role; swapped in `_become`
        self.leader_id: str | None = None
        self.keys = KeyTable()
        self.allowed: dict[str, int] = {}
        self._grace_allowed: dict[str, int] = {}
        self.grace_until = -_NEVER
        self.started_at = now
        self._date_dirty = False
        self._bucket_for = self._bucket_at = -_NEVER
        self.leader_up: tuple[str, ...] = ()
        self._rlf_text = ""
        self._set_rlf(rlf, render_rlf(rlf))
        self.table = DistributionTable.from_rlf(rlf, today)
        state = persisted.state if persisted is not None else None
        if state is not None:
            self._load(state, rlf, now)
        if persisted is not None:
            for entry in persisted.keys:
                self._load_key(entry, now)
        if state is not None or (persisted is not None and persisted.keys):
            self.grace_until = now + self.clocks.grace
        # follower / candidate state
        self.last_contact = now
        self.lease_until = -_NEVER
        self.last_hb_seq = 0
        self.check_sent = False
        self.elect_at = now + self.clocks.election_delay(self.rank)
        self.votes: set[str] = set()
        self.prevote = False
        self.leader_hints: dict[str, str] = {}
        self.borrow_wait: dict[str, float] = {}
        # leader state
        self.leader: LeaderState | None = None  # exists only while leading
        self._boot: list[Effect] = [
            Send(p, self._msg(ServerUp, rlf_seq=self.rlf.sequence, **self._cfg_fields()))
            for p in self.peers
        ]
        self._note(now, "start", f"{self.id} up (RLF seq {self.rlf.sequence}, term {self.term})")

    # ================================================================ set-up helpers

    def _set_rlf(self, rlf: Rlf, text: str) -> None:
        self.rlf = rlf
        self._rlf_text = text
        self.pool = rlf.pool
        self.clocks = Clocks.from_timing(rlf.timing)
        self.servers: tuple[str, ...] = rlf.server_ids
        self.peers: tuple[str, ...] = tuple(s for s in self.servers if s != self.id)
        self.rank = self.servers.index(self.id) if self.id in self.servers else len(self.servers)
        self.size = len(self.servers)
        self.quorum = self.size // 2 + 1 if rlf.majority_rule else 1
        self._addresses = tuple(ServerAddress(id=s.id, address=s.address) for s in rlf.servers)

    def _load(self, state: dict[str, Any], rlf: Rlf, now: float) -> None:
        try:
            self.term = int(state.get("term", 0))
            voted = state.get("voted_for")
            self.voted_for = str(voted) if voted else None
            text = state.get("rlf_text")
            if isinstance(text, str) and text:
                stored = parse_rlf(text)
                if stored.pool == rlf.pool and stored.sequence > rlf.sequence:
                    self._set_rlf(stored, text)
            if "table" in state:
                table = DistributionTable.from_json(state["table"])
                if table.licenses or table.codes:
                    self.table = table
                if self.rlf.sequence > int(state.get("rlf_seq", 0)):
                    # this server comes up with a newer RLF than its table: rebuild it
                    self.table = DistributionTable.from_rlf(
                        self.rlf, self.today, self.table.codes, self.table.cfg, self.table.claims
                    )
            self._grace_allowed = {
                str(k): int(v) for k, v in dict(state.get("allowed", {})).items()
            }
            # serials handed out before the restart lie below the persisted block end
            self.serial = self.serial_block = max(1, int(state.get("serial_block", 1)))
        except (LmError, KeyError, TypeError, ValueError) as err:
            self._note(now, "error", f"persisted state ignored: {err}")

    def _load_key(self, entry: dict[str, Any], now: float) -> None:
        try:
            client_id, lic = str(entry["client_id"]), str(entry["license"])
            count, request_id = int(entry["count"]), int(entry.get("request_id", 0))
            serial = int(entry.get("serial", 0))
        except (KeyError, TypeError, ValueError):
            return
        identity = identity_or_none(entry.get("identity"))
        if self.keys.get(client_id, lic) is None and count > 0:
            self.keys.add(
                client_id,
                lic,
                count,
                request_id,
                now=now,
                expires=now + self.clocks.grace,
                live=False,
                serial=serial if self.keys.by_serial(serial) is None else 0,
                identity=identity,
            ).claim_hold = now + self.clocks.claim_hold

    def _state_json(self) -> dict[str, Any]:
        allowed = self._steps.allowances(self)
        return {
            "format": STATE_FORMAT,
            "server_id": self.id,
            "term": self.term,
            "voted_for": self.voted_for,
            "rlf_seq": self.rlf.sequence,
            "rlf_text": self._rlf_text,
            "table": self.table.as_json(),
            "allowed": allowed,
            "serial_block": self.serial_block,
        }

    def _persist(self) -> PersistState:
        return PersistState(self._state_json())

    # ================================================================ small helpers

    def _msg(self, cls: type[_M], **fields: Any) -> _M:
        return cls(pool=self.pool, sender=self.id, term=self.term, **fields)

    def _cfg_fields(self) -> dict[str, int]:
        return {"cfg_term": self.table.cfg[0], "cfg_version": self.table.cfg[1]}

    def _version(self) -> tuple[int, int, int]:
        """What votes compare (S6): config version first (an RLF pushed through the
        leader bumps it too), then the RLF sequence."""
        return (*self.table.cfg, self.rlf.sequence)

    def _note(self, now: float, kind: str, text: str, **data: Any) -> Event:
        # Texts quote what peers sent (client ids, licenses): cut to a bounded line.
        text = clip_text(text, EVENT_TEXT_MAX)
        self._events.append((now, kind, text))
        return Event(kind, text, data)

    def _bump_cfg(self) -> None:
        self.table.cfg = (self.term, self.table.cfg[1] + 1)

    # ================================================================ doors

    def handle(self, now: float, sender: str, msg: Message) -> list[Effect]:
        """Take one message. `sender` is a peer server id or a connection token."""
        if type(msg) is ClientHeartbeat and not self._boot:
            fast = self._fast_renew(now, sender, msg)
            if fast is not None:
                return fast
        out: list[Effect] = self._take_boot()
        self._dispatch(now, sender, msg, out)
        return out

    def tick(self, now: float) -> list[Effect]:
        """Run the timers (call at or after `next_deadline`; calling more often is fine)."""
        out: list[Effect] = self._take_boot()
        self._tick(now, out)
        return out

    def set_identities(self, own: str, present: frozenset[str]) -> None:
        """The runtime says who I am and which servers are present (me and the peers I
        am in contact with, by their TLS keys): bound codes serve only with a majority
        of their servers (binding.py)."""
        self.identity = own
        self.present_ids = present

    def set_today(self, today: datetime.date) -> None:
        """The date changed: codes may have expired (hard limits are recomputed)."""
        self.today = today
        self._today_iso = today.isoformat()
        self._date_dirty = True

    @property
    def next_deadline(self) -> float:
        if self.removed:
            return _NEVER  # a server out of the pool has no timers
        expiry = self.keys.next_expiry
        if expiry is None:
            t = _NEVER
        else:  # expire in buckets: a seat counted a little longer is still safe
            if expiry != self._bucket_for:
                bucket = self.clocks.expiry_bucket
                self._bucket_for = expiry
                self._bucket_at = max(expiry, math.ceil(expiry / bucket) * bucket)
            t = self._bucket_at
        if self.waiting:
            t = min(t, min(w.deadline for w in self.waiting.values()))
        return min(t, self._steps.deadline(self))

    @property
    def role(self) -> Role:
        return self._steps.role

    def _take_boot(self) -> list[Effect]:
        boot, self._boot = self._boot, []
        return boot

    def _dispatch(self, now: float, sender: str, msg: Message, out: list[Effect]) -> None:
        if msg.pool != self.pool:
            out.append(self._note(now, "refused", f"message for pool {msg.pool!r} from {sender}"))
            if isinstance(msg, (Request, ClientHeartbeat)):
                out.append(Reply(sender, self._deny(msg, "bad_request", "wrong pool")))
            return
        handler = self._steps.handlers.get(type(msg))
        if handler is None:
            out.append(self._note(now, "refused", f"unexpected {type(msg).__name__} from {sender}"))
            return
        server_msg = type(msg) in _SERVER_MSGS
        if server_msg and sender not in self.peers and isinstance(msg, RlfTransfer):
            self._on_outsider_rlf(now, sender, msg, out)
            return
        if server_msg and self.removed:
            return  # not a member any more: nothing of the pool's concerns me
        if server_msg and sender not in self.peers:
            out.append(
                self._note(now, "refused", f"{type(msg).__name__} from non-member {sender!r}")
            )
            return
        if server_msg and msg.term < self.term and type(msg) in _TERMED:
            # a stale term: refused; a stale leader is told the current term
            if isinstance(msg, ServerHeartbeat):
                out.append(Send(sender, self._msg(ServerAck, ok=False, seq=msg.seq)))
            out.append(
                self._note(
                    now,
                    "refused",
                    f"{type(msg).__name__} from {sender}: stale term {msg.term} < {self.term}",
                )
            )
            return
        if server_msg:
            self.heard_peers.add(sender)
        handler(self, now, sender, msg, out)

    # ================================================================ roles

    def _become(self, role: Role, now: float, out: list[Effect], why: str) -> None:
        """The one place where the role changes: the old role is left, the new role's
        steps (`_STEPS`) replace the old ones, and the new role is entered."""
        old = self._steps
        if role not in TRANSITIONS[old.role]:
            raise EngineBug(f"illegal transition {old.role.value} -> {role.value}")
        self._steps = _STEPS[role]
        old.leave(self, now, out)
        self._steps.enter(self, now, out)
        if old.role is not role:
            out.append(
                self._note(
                    now,
                    "role",
                    f"{self.id}: {old.role.value} -> {role.value} (term {self.term}): {why}",
                    role=role.value,
                    term=self.term,
                )
            )

    def _enter_follower(self, now: float, out: list[Effect]) -> None:
        self.last_contact = now
        self.check_sent = False
        self.elect_at = now + self.clocks.election_delay(self.rank) + self.clocks.heartbeat

    def _enter_candidate(self, now: float, out: list[Effect]) -> None:
        self.leader_id = None
        self.lease_until = -_NEVER

    def _enter_disassociated(self, now: float, out: list[Effect]) -> None:
        self.lease_until = -_NEVER
        self.elect_at = now + self.clocks.election_delay(self.rank) + self.clocks.leader_timeout

    def _enter_leader(self, now: float, out: list[Effect]) -> None:
        self.leader_id = self.id
        self.lease_until = -_NEVER
        self._start_leading(now, out)

    def _adopt_term(self, term: int, now: float, out: list[Effect]) -> None:
        """A higher term seen: adopt it (persisted by the caller's PersistState)."""
        self.term = term
        self.voted_for = None
        self.lease_until = -_NEVER
        self.last_hb_seq = 0
        self._steps.new_term(self, term, now, out)
        self.leader_id = None

    def _yield_to_term(self, term: int, now: float, out: list[Effect]) -> None:
        """A leader or candidate that sees a higher term follows (whom, it learns later)."""
        self._become(Role.FOLLOWER, now, out, f"saw term {term}")

    # ================================================================ timers

    def _tick(self, now: float, out: list[Effect]) -> None:
        if self.removed:
            return
        if self._date_dirty:
            self._date_dirty = False
            self._steps.new_day(self, now, out)
        ended, gone = self.keys.expire(now)
        for entry in ended:
            # the client's own lease ended one client lease after its last heartbeat
            ago = max(0.0, now - entry.last_heartbeat - self.clocks.client_lease)
            out.append(
                LogUsage("expire", entry.client_id, entry.license, entry.count,
                         identity=entry.identity, ago=ago)
            )  # fmt: skip
        for entry in gone:
            out.append(PersistKey(entry.client_id, entry.license, None))
        if self.waiting:
            self._expire_waiting(now, out)
        if self.expecting:
            self.expecting = {k: v for k, v in self.expecting.items() if now < v[1]}
        if self.reclaimed:
            self.reclaimed = {k: v for k, v in self.reclaimed.items() if now < v[0]}
        self._steps.tick(self, now, out)

    def _tick_leader(self, now: float, out: list[Effect]) -> None:
        if now >= self._lead().next_hb and not self._leader_tick(now, out):
            return  # stepped down
        self._check_pending(now, out)

    def _tick_follower(self, now: float, out: list[Effect]) -> None:
        if not self.check_sent and now >= self.last_contact + self.clocks.leader_timeout:
            self.check_sent = True
            if self.leader_id:
                out.append(Send(self.leader_id, self._msg(LeaderCheck)))
            out.append(self._note(now, "check", f"{self.id}: no heartbeat from {self.leader_id}"))
        if now >= self.elect_at:
            self._stand(now, out)

    def _tick_candidate(self, now: float, out: list[Effect]) -> None:
        if now >= self.elect_at:
            self._stand_again(now, out)

    def _tick_unled(self, now: float, out: list[Effect]) -> None:
        """Starting or disassociated: stand when my turn comes."""
        if now >= self.elect_at:
            self._stand(now, out)

    def _deadline_leader(self) -> float:
        ld = self._lead()
        if ld.pending:
            return min(ld.next_hb, min(p.deadline for p in ld.pending))
        return ld.next_hb

    def _deadline_follower(self) -> float:
        if self.check_sent:
            return self.elect_at
        return min(self.elect_at, self.last_contact + self.clocks.leader_timeout)

    def _deadline_unled(self) -> float:
        return self.elect_at

    def _stand(self, now: float, out: list[Effect]) -> None:
        """No leader heard: stand, starting with a pre-vote round."""
        self._become(Role.CANDIDATE, now, out, "no leader heard")
        self._prevote(now, out)

    def _stand_again(self, now: float, out: list[Effect]) -> None:
        """A candidate whose round ended undecided: if peers named a leader in their
        refusals, disassociate and ask it; else stand again."""
        if self.prevote and self.leader_hints:
            leader = next(iter(self.leader_hints.values()))
            self.leader_id = leader
            self._become(Role.DISASSOCIATED, now, out, f"peers report leader {leader}")
            out.append(Send(leader, self._msg(LeaderCheck)))
            return
        self._prevote(now, out)

    def _prevote(self, now: float, out: list[Effect]) -> None:
        """Start a pre-vote round (or, with a quorum of 1, win at once)."""
        self.prevote = True
        self.votes = {self.id}
        self.leader_hints = {}
        self.elect_at = now + self.clocks.election_delay(self.rank)
        if len(self.votes) >= self.quorum:
            self._start_vote(now, out)
            return
        if self.heard[0] == 0 and now >= self.started_at + 2 * self.clocks.leader_timeout:
            # I have followed nobody since I started, and peers that never answered me
            # may run an older RLF that does not list me: offer mine, before anything
            # they would refuse from a non-member (they adopt it only if it is newer,
            # validly signed and lists me; see `membership`)
            offer = self._msg(RlfTransfer, rlf_text=self._rlf_text)
            out.extend(Send(p, offer) for p in self.peers if p not in self.heard_peers)
        ask = self._msg(VoteRequest, pre=True, rlf_seq=self.rlf.sequence, **self._cfg_fields())
        ask = replace(ask, term=self.term + 1)
        out.extend(Send(p, ask) for p in self.peers)

    def _start_vote(self, now: float, out: list[Effect]) -> None:
        self.prevote = False
        self.term += 1
        # heartbeat numbers are the leader's of a term: a winner of this term (another
        # candidate, if I lose) numbers from 1, whatever my last leader reached
        self.last_hb_seq = 0
        self.voted_for = self.id
        self.votes = {self.id}
        self.elect_at = now + self.clocks.election_delay(self.rank)
        out.append(self._persist())
        out.append(self._note(now, "election", f"{self.id} stands for term {self.term}"))
        if len(self.votes) >= self.quorum:
            self._become(Role.LEADER, now, out, "won the election")
            return
        ask = self._msg(VoteRequest, pre=False, rlf_seq=self.rlf.sequence, **self._cfg_fields())
        out.extend(Send(p, ask) for p in self.peers)

    # ================================================================ elections

    def _alive_as_leader(self, now: float) -> bool:
        """Leader stickiness: am I a leader that is alive?"""
        return now < self._lead().lease_end or not self.rlf.majority_rule

    def _alive_as_follower(self, now: float) -> bool:
        """Leader stickiness: do I follow a leader that is alive?"""
        return now < max(self.last_contact + self.clocks.leader_timeout, self.lease_until)

    def _on_vote_request(
        self, now: float, sender: str, msg: VoteRequest, out: list[Effect]
    ) -> None:
        ballot = self._judge_vote(now, sender, msg, out)
        if ballot is Ballot.VOTE:
            if msg.term > self.term:
                self._adopt_term(msg.term, now, out)
            self._record_vote(now, sender, msg, out)
        elif ballot is Ballot.PRE and self._ranks_before_me(sender):
            # a server meant to stand before me does: let it (see the candidate's case)
            self.elect_at = max(self.elect_at, now + self.clocks.election_delay(self.rank))

    def _on_vote_request_candidate(
        self, now: float, sender: str, msg: VoteRequest, out: list[Effect]
    ) -> None:
        """A candidate that gives its real vote to another stops standing; so does one
        in its pre-vote round that grants a pre-vote to a server of lower rank (which is
        meant to stand first: a missed heartbeat can line two timers up, and both
        standing at once split the vote, costing a whole election delay)."""
        ballot = self._judge_vote(now, sender, msg, out)
        if ballot is Ballot.VOTE:
            if msg.term > self.term:
                self._adopt_term(msg.term, now, out)  # (which makes me a follower)
            else:
                self._become(Role.FOLLOWER, now, out, f"voted for {sender}")
            self._record_vote(now, sender, msg, out)
        elif ballot is Ballot.PRE and self.prevote and self._ranks_before_me(sender):
            self._become(Role.FOLLOWER, now, out, f"{sender} stands first")
            self.leader_id = None
            self.last_contact = now - self.clocks.leader_timeout  # vote for it at once
            self.check_sent = True  # no leader to check on: stand when my turn comes
            self.elect_at = now + self.clocks.election_delay(self.rank)

    def _ranks_before_me(self, sid: str) -> bool:
        return sid in self.servers and self.servers.index(sid) < self.rank

    def _judge_vote(self, now: float, sender: str, msg: VoteRequest, out: list[Effect]) -> Ballot:
        """Judge a (pre-)vote request and answer it, except for a real vote granted
        (`Ballot.VOTE`): that answer goes out once `_record_vote` persisted the vote."""
        verdict = judge_vote(
            my_term=self.term,
            voted_for=self.voted_for,
            candidate=sender,
            term=msg.term,
            pre=msg.pre,
            leader_alive=self._steps.leader_alive(self, now),
            theirs=(msg.cfg_term, msg.cfg_version, msg.rlf_seq),
            mine=self._version(),
        )
        if verdict.ballot is Ballot.REFUSE:
            leader = (self.leader_id or "") if verdict.leader_alive else ""
            out.append(self._vote_reply(sender, msg, False, verdict.reason, leader))
        elif verdict.ballot is not Ballot.VOTE:
            out.append(self._vote_reply(sender, msg, True))
        return verdict.ballot

    def _record_vote(self, now: float, sender: str, msg: VoteRequest, out: list[Effect]) -> None:
        self.voted_for = sender
        self.last_contact = now  # do not stand while the candidate we chose is being elected
        self.elect_at = max(self.elect_at, now + self.clocks.election_delay(self.rank))
        out.append(self._persist())
        out.append(self._vote_reply(sender, msg, True))

    def _vote_reply(
        self, sender: str, msg: VoteRequest, granted: bool, reason: str = "", leader: str = ""
    ) -> Send:
        reply = self._msg(
            VoteReply, for_term=msg.term, pre=msg.pre, granted=granted, leader=leader, reason=reason
        )
        return Send(sender, reply)

    def _only_term(
        self, now: float, sender: str, msg: VoteReply | ServerAck, out: list[Effect]
    ) -> None:
        """A vote reply to a server that does not stand, an ACK to one that does not
        lead: only a higher term in it counts."""
        if msg.term > self.term:
            self._adopt_term(msg.term, now, out)
            out.append(self._persist())

    def _on_vote_reply(self, now: float, sender: str, msg: VoteReply, out: list[Effect]) -> None:
        if msg.pre != self.prevote:
            return
        expected = self.term + 1 if self.prevote else self.term
        if msg.for_term != expected:
            return
        if msg.term > self.term and not msg.granted:
            self._adopt_term(msg.term, now, out)
            out.append(self._persist())
            return
        if not msg.granted:
            if msg.leader:
                self.leader_hints[sender] = msg.leader
            return
        self.votes.add(sender)
        if len(self.votes) < self.quorum:
            return
        if self.prevote:
            self._start_vote(now, out)
        else:
            self._become(Role.LEADER, now, out, f"won term {self.term} ({len(self.votes)} votes)")

    # ============================================================ leader (handlers: `leading`)

    def _lead(self) -> LeaderState:
        """The leader state; an `EngineBug` when this server does not lead."""
        if self.leader is None:
            raise EngineBug(f"{self.id} used the leader's state as {self.role.value}")
        return self.leader

    # ---------------------------------------------------------------- borrowing

    def _borrow(
        self,
        now: float,
        lic: str,
        want: int,
        failover: bool,
        out: list[Effect],
        gather: int = 0,
    ) -> None:
        if self._limit(lic) < self.table.row(lic, self.id):
            return  # seats already moved here are on their way (or held): do not ask again
        self._steps.borrow(self, now, lic, want, failover, out, gather)

    # ================================================================ follower

    def _on_heartbeat(
        self, now: float, sender: str, msg: ServerHeartbeat, out: list[Effect]
    ) -> None:
        if msg.term < self.term:
            out.append(Send(sender, self._msg(ServerAck, ok=False, seq=msg.seq)))
            return
        if not self._accept_leader(now, sender, msg.term, out):
            return
        if msg.seq <= self.last_hb_seq:
            return  # older than one already applied
        self.last_hb_seq = msg.seq
        self.leader_up = msg.up
        self.last_contact = now
        self.check_sent = False
        self.elect_at = now + self.clocks.election_delay(self.rank) + self.clocks.heartbeat
        persist = False
        # Only a heartbeat that answers an ACK of this incarnation counts: a replayed
        # heartbeat from before a restart must not bring back an old allowance or lease.
        fresh = self.started_at <= msg.echo <= now
        if msg.revoke or self.revoked:
            self._revoke(now, msg.revoke, out)
        if msg.adopt or self.adopted:
            self._take_adoptions(now, msg.adopt or (), msg.echo if fresh else -_NEVER)
        raised = False
        if msg.allowed is not None and fresh:
            new = {a.license: a.count for a in msg.allowed}
            if any(new.get(k, 0) > self.allowed.get(k, 0) for k in new):
                persist = raised = True
            self.allowed = new
        if fresh:
            if msg.term != self.heard[0]:
                self.heard_log = {}
            self.heard = (msg.term, msg.seq, msg.echo)
            self.heard_log[msg.seq] = msg.echo
            if len(self.heard_log) > 64:
                cutoff = now - self.clocks.history
                self.heard_log = {k: v for k, v in self.heard_log.items() if v >= cutoff}
        if fresh and msg.lease > 0:
            until = msg.echo + self.clocks.follower_lease(msg.lease)
            if until > self.lease_until:
                self.lease_until = until
                self.lease_src = (msg.term, msg.seq)
                self.lease_src_at = now
                self.renew_until = max(self.renew_until, until + self.clocks.renew_window)
        if msg.rlf_seq < self.rlf.sequence:
            out.append(Send(sender, self._msg(RlfOffer, rlf_seq=self.rlf.sequence)))
        if persist:
            out.append(self._persist())
        out.append(Send(sender, self._ack(now, msg.seq)))
        if raised or (self.waiting and now < self.lease_until):
            self._retry_waiting(now, out)

    def _accept_leader(self, now: float, sender: str, term: int, out: list[Effect]) -> bool:
        """A message from the leader of `term` (>= mine): follow it (False: refused)."""
        if term > self.term:
            self._adopt_term(term, now, out)
            out.append(self._persist())
        return self._steps.accept_leader(self, now, sender, term, out)

    def _second_leader(self, now: float, sender: str, term: int, out: list[Effect]) -> bool:
        out.append(self._note(now, "refused", f"second leader {sender} in term {term}"))
        return False

    def _keep_following(self, now: float, sender: str, term: int, out: list[Effect]) -> bool:
        if self.leader_id != sender:
            self._follow(now, sender, term, out)
        return True

    def _follow(self, now: float, sender: str, term: int, out: list[Effect]) -> bool:
        self.leader_id = sender
        self.stepped_down = ""
        self._become(Role.FOLLOWER, now, out, f"{sender} leads term {term}")
        return True

    def _maybe_fenced(self, now: float, since: float) -> bool:
        """Could a leader have fenced me by now, if it last heard from me at `since`
        (my ACK's time, on my clock)? Not before a fence-time (on its clock) later."""
        return now >= since + self.clocks.fence * (1 - 2 * self.clocks.drift)

    def _ack(self, now: float, seq: int) -> ServerAck:
        if self.expecting and self._maybe_fenced(now, self.known_at):
            # Out of contact for so long that a leader may have fenced me and handed
            # out everything I had (the seats kept for claimants too): they are not
            # mine to give beyond my allowance any more.
            self.expecting = {}
        self.known_at = now
        rows = []
        for lic in self.table.licenses:
            in_use = self.keys.in_use(lic)
            held = self.keys.held(lic)  # counted for claims, no client holds them
            rows.append(
                LicenseRow(
                    license=lic,
                    distribution=self.table.row(lic, self.id),
                    allowed=self.allowed.get(lic, 0),
                    in_use=in_use - held + self._spoken_for(now, lic, ""),
                    grace=held + self._grace_held(now, lic, in_use),
                )
            )
        return self._msg(
            ServerAck,
            seq=seq,
            ts=now,
            rlf_seq=self.rlf.sequence,
            rows=tuple(rows),
            **self._cfg_fields(),
        )

    def _grace_held(self, now: float, lic: str, in_use: int) -> int:
        """Seats held back beyond those in use: during restart grace (S4), the allowance
        I had before the restart, as I may have granted it without persisting."""
        if now >= self.grace_until:
            return 0
        return max(0, self._grace_allowed.get(lic, 0) - in_use)

    def _on_sync(self, now: float, sender: str, msg: DistributionSync, out: list[Effect]) -> None:
        if msg.term < self.term:
            return
        if not self._accept_leader(now, sender, msg.term, out):
            return
        if (msg.cfg_term, msg.cfg_version) < self.table.cfg:
            return
        if (msg.cfg_term, msg.cfg_version) != self.table.cfg:
            known = self.servers if msg.rlf_seq <= self.rlf.sequence else None
            why = DistributionTable.check_sync(msg, known)
            if why:
                out.append(self._note(now, "refused", f"distribution from {sender}: {why}"))
                return
            self.table = DistributionTable.from_sync(msg)
            out.append(self._persist())
            out.append(
                self._note(
                    now,
                    "sync",
                    f"{self.id}: distribution v{msg.cfg_version} from {sender}",
                )
            )
        out.append(Send(sender, self._ack(now, self.last_hb_seq)))

    def _on_borrow_grant(
        self, now: float, sender: str, msg: BorrowGrant, out: list[Effect]
    ) -> None:
        if msg.client_id:  # the answer to a fail-over client's claim or borrow
            if msg.claim:
                self._claim_arrived(now, msg.client_id, msg.license, msg.count, msg.hold_for)
            self._retry_waiting(now, out)
            return
        if msg.count == 0:
            # nothing now: do not ask again for a while
            self.borrow_wait[msg.license] = now + self.clocks.leader_timeout
        else:
            self.borrow_wait.pop(msg.license, None)

    def _on_leader_check(
        self, now: float, sender: str, msg: LeaderCheck, out: list[Effect]
    ) -> None:
        out.append(Send(sender, self._heartbeat(now, sender, tuple(self._up(now)))))

    # ================================================================ start-up, RLF

    def _server_up_reply(self, sender: str, leader: str) -> Send:
        reply = self._msg(
            ServerUpReply, rlf_seq=self.rlf.sequence, leader=leader, **self._cfg_fields()
        )
        return Send(sender, reply)

    def _on_server_up(self, now: float, sender: str, msg: ServerUp, out: list[Effect]) -> None:
        """Starting or disassociated: I know of no leader to name."""
        out.append(self._server_up_reply(sender, ""))

    def _on_server_up_follower(
        self, now: float, sender: str, msg: ServerUp, out: list[Effect]
    ) -> None:
        out.append(self._server_up_reply(sender, self.leader_id or ""))

    def _on_server_up_candidate(
        self, now: float, sender: str, msg: ServerUp, out: list[Effect]
    ) -> None:
        out.append(self._server_up_reply(sender, ""))
        if self.prevote:
            # a late starter can vote now: ask it
            ask = self._msg(VoteRequest, pre=True, rlf_seq=self.rlf.sequence, **self._cfg_fields())
            out.append(Send(sender, replace(ask, term=self.term + 1)))

    def _on_server_up_leader(
        self, now: float, sender: str, msg: ServerUp, out: list[Effect]
    ) -> None:
        out.append(self._server_up_reply(sender, self.leader_id or ""))
        # FIG. 11: a returning server gets a heartbeat and its distribution at once;
        # its old clock readings mean nothing now
        pr = self._lead().peer(sender)
        pr.last_ack_ts = 0.0
        out.append(Send(sender, self._heartbeat(now, sender, tuple(self._up(now)))))
        out.append(Send(sender, self._sync()))
        pr.last_sync_sent = now
        if msg.rlf_seq < self.rlf.sequence:
            self._send_rlf(now, sender, out)
        elif msg.rlf_seq > self.rlf.sequence:
            out.append(Send(sender, self._msg(RlfAccept, rlf_seq=msg.rlf_seq)))

    def _on_server_up_reply_unled(
        self, now: float, sender: str, msg: ServerUpReply, out: list[Effect]
    ) -> None:
        """Not leading nor following: ask the leader the reply names."""
        if msg.leader in self.peers:
            out.append(Send(msg.leader, self._msg(LeaderCheck)))
        self._on_server_up_reply(now, sender, msg, out)

    def _on_server_up_reply(
        self, now: float, sender: str, msg: ServerUpReply, out: list[Effect]
    ) -> None:
        if msg.rlf_seq < self.rlf.sequence and msg.leader == sender:
            out.append(Send(sender, self._msg(RlfOffer, rlf_seq=self.rlf.sequence)))

    def _on_rlf_offer(self, now: float, sender: str, msg: RlfOffer, out: list[Effect]) -> None:
        if msg.rlf_seq > self.rlf.sequence:
            out.append(Send(sender, self._msg(RlfAccept, rlf_seq=msg.rlf_seq)))

    def _on_rlf_accept(self, now: float, sender: str, msg: RlfAccept, out: list[Effect]) -> None:
        if self.rlf.sequence >= msg.rlf_seq:
            out.append(Send(sender, self._msg(RlfTransfer, rlf_text=self._rlf_text)))

    def _on_rlf_transfer(
        self, now: float, sender: str, msg: RlfTransfer, out: list[Effect]
    ) -> None:
        try:
            new = check_rlf(msg.rlf_text, self.rlf)
        except Refused as err:
            out.append(self._note(now, "refused", f"RLF from {sender}: {err}"))
            return
        self._adopt_rlf(now, new, msg.rlf_text, out)

    def _adopt_rlf(self, now: float, new: Rlf, text: str, out: list[Effect]) -> None:
        old_seq = self.rlf.sequence
        gone = membership.removed_peers(self.peers, new, self.id)
        self._set_rlf(new, text)
        if self.id not in new.server_ids:
            self._leave_pool(now, new, out)
            return
        self.elect_at = min(self.elect_at, now + self.clocks.after_push_delay(self.rank))
        self._steps.install_rlf(self, now, text, gone, out)
        out.append(
            self._note(
                now, "push", f"{self.id}: RLF seq {old_seq} -> {new.sequence}", rlf_seq=new.sequence
            )
        )

    def _install_rlf(self, now: float, text: str, gone: list[str], out: list[Effect]) -> None:
        """Not leading: the new RLF (set already) is persisted; the leader sends me its
        table."""
        out.append(self._persist())

    def _install_rlf_leader(
        self, now: float, text: str, gone: list[str], out: list[Effect]
    ) -> None:
        """Leading: the table is rebuilt from the new RLF (set already) and sent out."""
        ld = self._lead()
        ld.ledger.set_servers(self.servers)
        # honoured claims outlive a new RLF: their tickets may still be presented,
        # and the granting servers' reports are discounted by them (`_unrevoked`)
        drained = self.table.drained
        self.table = DistributionTable.from_rlf(
            self.rlf, self.today, self.table.codes, self.table.cfg, self.table.claims
        )
        self.table.drained = {k: v for k, v in drained.items() if k in self.servers}
        self._bump_cfg()
        out.append(self._persist())
        for p in self.peers:  # the leader first (above), then every follower
            ld.peer(p).last_rlf_sent = now
            out.append(Send(p, self._msg(RlfTransfer, rlf_text=text)))
        for p in gone:  # a server the RLF removed is told so (it stops serving)
            out.append(Send(p, self._msg(RlfTransfer, rlf_text=text)))
        self._table_changed(now, out, bump=False)

    def _on_outsider_rlf(
        self, now: float, sender: str, msg: RlfTransfer, out: list[Effect]
    ) -> None:
        """A server that is not in my RLF offers its own: it joins if that RLF is newer,
        validly signed and lists it (see `membership`)."""
        try:
            new = membership.check_offer(msg.rlf_text, self.rlf, sender)
        except Refused as err:
            out.append(self._note(now, "refused", f"RLF offered by non-member {sender!r}: {err}"))
            return
        out.append(self._note(now, "push", f"{sender} joins: it offered RLF seq {new.sequence}"))
        self._adopt_rlf(now, new, msg.rlf_text, out)

    def _leave_pool(self, now: float, new: Rlf, out: list[Effect]) -> None:
        """A newer RLF does not list me: I serve nothing from now on (stop me)."""
        self.removed = membership.removed_text(self.id, new)
        self.lease_until = self.renew_until = -_NEVER
        self._steps.leave_pool(self, now, out)
        self.leader_id = None
        out.append(self._persist())
        out.append(self._note(now, "push", self.removed, rlf_seq=new.sequence))

    def _step_down_removed(self, now: float, out: list[Effect]) -> None:
        self._become(Role.FOLLOWER, now, out, "removed from the pool")

    def _new_day_leader(self, now: float, out: list[Effect]) -> None:
        """Leading: expired codes lower the hard limits in the table."""
        fresh = DistributionTable.from_rlf(self.rlf, self.today, self.table.codes)
        changed = False
        for lic, state in self.table.licenses.items():
            new = fresh.licenses.get(lic)
            hard = new.hard_limit if new is not None else 0
            if hard != state.hard_limit:
                self.table.set_hard_limit(lic, hard, self.servers)
                changed = True
            if new is not None and new.expires != state.expires:
                state.expires = new.expires
                changed = True
        if changed:
            out.append(self._note(now, "expiry", "license codes expired: hard limits changed"))
            self._table_changed(now, out)

    # ================================================================ clients

    def _deny(
        self, msg: Request | ClientHeartbeat, reason: str, detail: str, retry_after: float = 0.0
    ) -> Deny:
        return self._msg(
            Deny,
            request_id=msg.request_id,
            license=msg.license,
            reason=reason,
            detail=detail,
            retry_after=retry_after,
        )

    def _not_serving(self, now: float) -> tuple[str, str] | None:
        """(deny reason, detail) while I may not issue or renew authorizations."""
        if self.removed:
            return ("disassociated", self.removed)
        return self._steps.not_serving(self, now)

    def _why_not_leading(self, now: float) -> tuple[str, str] | None:
        if self._serving_lease(now):
            return None
        return ("no_majority", self._no_lease_why(now))

    def _why_not_following(self, now: float) -> tuple[str, str] | None:
        if now < self.lease_until:
            return None
        if self.stepped_down:
            return ("no_majority", f"{self.id} {self.stepped_down}")
        return ("no_majority", f"{self.id} holds no lease from a majority leader")

    def _why_disassociated(self, now: float) -> tuple[str, str] | None:
        return ("disassociated", f"{self.id} cannot reach leader {self.leader_id}")

    def _why_electing(self, now: float) -> tuple[str, str] | None:
        return ("no_majority", f"{self.id} is {self.role.value}: election in progress")

    def _has_lease(self, now: float) -> bool:
        """Follower: do I hold a lease from the leader?"""
        return now < self.lease_until

    def _limit(self, lic: str) -> int:
        """The seats of `lic` I may serve."""
        return self._steps.limit(self, lic)

    def _limit_as_leader(self, lic: str) -> int:
        return self._lead().ledger.get(self.id, lic).sent

    def _limit_as_follower(self, lic: str) -> int:
        return self.allowed.get(lic, 0)

    def _allowances_as_leader(self) -> dict[str, int]:
        return self._lead().ledger.allowances(self.id)

    def _allowances_as_follower(self) -> dict[str, int]:
        return dict(self.allowed)

    def _on_client(self, now: float, token: str, msg: Message, out: list[Effect]) -> None:
        if isinstance(msg, Release):
            self._on_release(now, token, msg, out)
            return
        if not isinstance(msg, (Request, ClientHeartbeat)):
            raise EngineBug(f"{type(msg).__name__} routed to the client path")
        heartbeat = isinstance(msg, ClientHeartbeat)
        failover = isinstance(msg, ClientHeartbeat) and msg.failover
        lic, client, count = msg.license, msg.sender, msg.count

        def deny(reason: str, detail: str, retry: float = 0.0) -> None:
            out.append(Reply(token, self._deny(msg, reason, detail, retry)))
            out.append(LogUsage("deny", client, lic, count, reason, identity=msg.identity))

        if not 0 < count <= MAX_COUNT or not client:
            deny("bad_request", f"count must be 1..{MAX_COUNT}")
            return
        state = self.table.licenses.get(lic)
        if state is None:
            deny("unknown_license", f"no license {lic!r} in pool {self.pool!r}")
            return
        if state.expires < self._today_iso:
            deny("expired", f"every code of {lic!r} expired on {state.expires}")
            return
        unbound = self.binding.refusal(
            lic, self.rlf, self.table.codes, self.today, self.identity, self.present_ids
        )
        if unbound is not None:
            deny("binding", unbound)
            return
        if heartbeat and self.reclaimed:
            gone = self.reclaimed.get((client, lic))
            if gone is not None and now < gone[0]:
                deny("reclaimed", f"reclaimed by an operator: {gone[1]}")
                return
        entry = self.keys.get(client, lic)
        if entry is not None and entry.revoked:
            # held back only to cover a lease I may have renewed before the revoke: the
            # seat itself moved with the client's claim, its adopter keeps it for it
            deny("fail_over", f"{self.id}: this seat moved with {client}'s fail-over claim")
            return
        if (
            entry is not None
            and isinstance(msg, ClientHeartbeat)
            and failover
            and msg.ticket
            and self._foreign_ticket(msg)
        ):
            # The client holds another server's authorization now (it moved on since my
            # entry): my entry is stale, and renewing it would count its seat twice.
            self.keys.remove(client, lic)
            out.append(PersistKey(client, lic, None))
            out.append(
                LogUsage("moved", client, lic, entry.count, "moved on", identity=entry.identity)
            )
            entry = None
        if drain.is_drained(self.table, self.id):
            deny("drained", f"{self.id} is drained for maintenance: ask another server")
            return
        why = self._not_serving(now)
        if why is not None:
            if (
                entry is not None
                and heartbeat
                and not failover
                and entry.live
                and count == entry.count
                and now < self.renew_until
                and now >= entry.skip_hold
                and msg.request_id == entry.request_id + 1
            ):
                # L2: keep renewing (never granting) what I hold while the pool elects;
                # the renew window ends before any leader could fence me (see leases).
                # Only a client whose request ids here run on (consecutive), and whose
                # tickets shown to other servers since it last skipped ids can no longer
                # be claimed (`skip_hold`): else a claim on this seat may be in flight.
                self._renew(now, token, msg, entry, entry.count, out)
                return
            deny(why[0], why[1], self._retry_hint(why[0]))
            return
        limit = self._limit(lic)
        if entry is not None:
            self._renew(now, token, msg, entry, limit, out)
            return
        if now < self.grace_until and not (heartbeat and not failover):
            deny(
                "restart_grace",
                f"{self.id} restarted; new grants in {self.grace_until - now:.1f}s",
                self.grace_until - now,
            )
            return
        if (
            isinstance(msg, ClientHeartbeat)
            and failover
            and msg.ticket
            and self._adopt(now, token, msg, out)
        ):
            return
        if self._expected(now, lic, client, count):
            self._grant(now, token, msg, out)
            return
        in_use = self.keys.in_use(lic) + self._spoken_for(now, lic, client)
        if in_use + count > limit:
            self._borrow(now, lic, in_use + count - limit, failover, out, gather=count)
            limit = self._limit(lic)
        if in_use + count > limit:
            deny(
                "no_seats",
                f"{self.id} has {max(0, limit - in_use)} of {lic!r} available",
                self.clocks.retry_after,
            )
            return
        self._grant(now, token, msg, out)

    def _foreign_ticket(self, msg: ClientHeartbeat) -> bool:
        """Does the client present a valid ticket of another pool server, whose seat did
        not move with a claim? (A claimed ticket's seat has left its server: if it came
        here, my entry is that seat -- the client never heard my Authorize -- and
        dropping the entry would leave the client's old lease counted nowhere.)"""
        try:
            ticket = claims.read(self.claim_key, msg.ticket, msg.sender, msg.license)
        except claims.ClaimError:
            return False
        if ticket.key in self.table.claims or ticket.key in self.adopted:
            return False
        return ticket.server != self.id and ticket.server in self.peers

    def _retry_hint(self, reason: str) -> float:
        if reason == "no_majority":
            return self.clocks.heartbeat  # an election takes about this long to settle
        return self.clocks.retry_after

    def _grant(
        self, now: float, token: str, msg: Request | ClientHeartbeat, out: list[Effect]
    ) -> None:
        """A new key-table entry for the client (the caller checked room and serving)."""
        client, lic, count = msg.sender, msg.license, msg.count
        self.expecting.pop((client, lic), None)
        serial = self._next_serial(out)
        entry = self.keys.add(
            client,
            lic,
            count,
            msg.request_id,
            now=now,
            expires=now + self.clocks.client_keep,
            serial=serial,
            identity=msg.identity,
        )
        heartbeat = isinstance(msg, ClientHeartbeat)
        out.append(PersistKey(client, lic, entry.as_json()))
        out.append(
            LogUsage("grant", client, lic, count, "failover" if heartbeat else "",
                     identity=msg.identity)
        )  # fmt: skip
        out.append(Reply(token, self._authorize(msg, entry)))
        self._after_grant(now, lic, out)

    def _next_serial(self, out: list[Effect]) -> int:
        """A serial for a new entry; serials are unique for ever: the end of the block in
        use is persisted (before the reply that carries the serial) and a restart starts
        from it."""
        serial = self.serial
        self.serial += 1
        if self.serial >= self.serial_block:
            self.serial_block = self.serial + _SERIAL_BLOCK
            out.append(self._persist())
        return serial

    def _renew(
        self,
        now: float,
        token: str,
        msg: Request | ClientHeartbeat,
        entry: KeyEntry,
        limit: int,
        out: list[Effect],
    ) -> None:
        lic = entry.license
        count = msg.count
        # Re-adoption after a restart (S4) needs room among the live seats: I may have
        # been fenced while down and my seats handed out. Without room the client fails
        # over at once with its ticket: a claim moves exactly this entry's seat to its
        # adopter (once I let go of it), where waiting here would outlast its lease.
        if not entry.live and self.keys.live(lic) + entry.count > limit:
            detail = f"{self.id}: not re-adopted after a restart (no room): fail over"
            out.append(Reply(token, self._deny(msg, "fail_over", detail)))
            return
        # A REQUEST renewing an entry is rare (its RELEASE was overtaken, or a duplicate):
        # persist its request id, so a restart still knows that older RELEASEs are stale.
        persist = isinstance(msg, Request)
        if count != entry.count:
            if count > entry.count and self.keys.in_use(lic) + count - entry.count > limit:
                count = entry.count  # keep what it has
            else:
                self.keys.resize(entry, count)
                persist = True
        was_live = entry.live
        if isinstance(msg, ClientHeartbeat) and msg.failover:
            entry.walked = now  # it presented my ticket elsewhere on the way back
        self.keys.renew(
            entry, now=now, expires=now + self.clocks.client_keep, request_id=msg.request_id
        )
        if msg.identity is not None and msg.identity != entry.identity:
            entry.identity = msg.identity  # stated anew (a request, a fail-over)
            persist = True
        if not entry.serial:  # loaded from a store written before serials existed
            entry.serial = self._next_serial(out)
            self.keys.index_serial(entry)
            persist = True
        if persist:
            out.append(PersistKey(entry.client_id, lic, entry.as_json()))
        if not was_live:
            entry.since = now
            out.append(
                LogUsage("grant", entry.client_id, lic, entry.count, "re-adopted",
                         identity=entry.identity)
            )  # fmt: skip
        out.append(Reply(token, self._authorize(msg, entry)))

    @property
    def ledger(self) -> Ledger | None:
        """The leader's ledger (None unless leading), for observers."""
        return None if self.leader is None else self.leader.ledger

    def _fast_renew(self, now: float, token: str, msg: ClientHeartbeat) -> list[Effect] | None:
        """The hot path: a live client renews what it holds on a serving server.
        Anything unusual returns None and takes the general path."""
        if not self._steps.serving(self, now):
            return None
        if self.reclaimed or msg.failover or self.table.drained:
            return None
        entry = self.keys.get(msg.sender, msg.license)
        if (
            entry is None
            or not entry.live
            or not entry.serial
            or entry.count != msg.count
            or msg.pool != self.pool
        ):
            return None
        state = self.table.licenses.get(msg.license)
        if state is None or state.expires < self._today_iso:
            return None
        entry.last_heartbeat = now
        entry.saw_request(msg.request_id)
        expires = now + self.clocks.client_keep
        if expires > entry.expires:
            entry.expires = expires
        return [
            Reply(
                token,
                Authorize(
                    pool=self.pool,
                    sender=self.id,
                    term=self.term,
                    request_id=msg.request_id,
                    license=msg.license,
                    count=entry.count,
                    lease=self.clocks.client_lease,
                    heartbeat_interval=self.clocks.client_heartbeat,
                    servers=self._addresses,
                    ticket=self._ticket(entry),
                ),
            )
        ]

    def _authorize(self, msg: Request | ClientHeartbeat, entry: KeyEntry) -> Authorize:
        return self._msg(
            Authorize,
            request_id=msg.request_id,
            license=msg.license,
            count=entry.count,
            lease=self.clocks.client_lease,
            heartbeat_interval=self.clocks.client_heartbeat,
            servers=self._addresses,
            ticket=self._ticket(entry),
        )

    # ---------------------------------------------------------------- fail-over claims (L2; the
    # claims themselves, both sides: `seat_moves`)

    def _ticket(self, entry: KeyEntry) -> str:
        """The entry's ticket under my current lease source ("" without a claim key)."""
        if not self.claim_key or not entry.serial:
            return ""
        term, seq = self.lease_src
        # until the ticket's claim window surely ended, the seats stay counted here
        entry.claim_hold = max(entry.claim_hold, self.lease_src_at + self.clocks.claim_hold)
        ticket = claims.Ticket(
            server=self.id, serial=entry.serial, count=entry.count, term=term, seq=seq
        )
        return claims.mint(self.claim_key, ticket, entry.client_id, entry.license)

    def _adopt(self, now: float, token: str, msg: ClientHeartbeat, out: list[Effect]) -> bool:
        """A fail-over client presents the ticket of a seat another server granted it.
        With room here, it is an ordinary fail-over grant (FIG. 10: B serves A's client
        from its own allocation; A's row is left as it was). Without room, claim that
        seat here and answer once it arrives. True if the client is answered (now or
        later)."""
        lic, count = msg.license, msg.count
        if self._room(now, lic, msg.sender, count):
            return False
        try:
            ticket = claims.read(self.claim_key, msg.ticket, msg.sender, lic)
        except claims.ClaimError as err:
            out.append(self._note(now, "refused", f"claim of {msg.sender}: {err}"))
            return False
        if ticket.server == self.id or ticket.server not in self.peers:
            return False  # my own seat came back (its entry is gone): an ordinary request
        self.waiting[(msg.sender, lic)] = _WaitingClaim(
            token=token, msg=msg, deadline=now + self.clocks.claim_wait
        )
        self._steps.claim(self, now, msg, out)
        return True

    def _after_grant(self, now: float, lic: str, out: list[Effect]) -> None:
        row = self.table.row(lic, self.id)
        want = threshold_want(self.keys.in_use(lic), row, self.rlf.borrowing_threshold)
        if want > 0:
            self._borrow(now, lic, want, False, out)

    def _on_release(self, now: float, token: str, msg: Release, out: list[Effect]) -> None:
        entry = self.keys.get(msg.sender, msg.license)
        if entry is not None and msg.request_id < entry.request_id:
            # The client sent this RELEASE before the request that the entry now answers
            # (a release overtaken by a later REQUEST, or a replay): the client believes
            # it holds under that later request, so the seat stays counted (S1).
            out.append(
                self._note(
                    now,
                    "refused",
                    f"stale Release #{msg.request_id} from {msg.sender}: "
                    f"holds under #{entry.request_id}",
                )
            )
            entry = None
        elif entry is not None and (
            now - entry.walked < self.clocks.claim_window and now < entry.claim_hold
        ):
            # The client came back from a fail-over walk lately: a claim of this entry
            # it made on the way may still be in flight, and would move this seat. Keep
            # it counted until that claim can no longer be honoured (the claim hold).
            self.keys.hold(entry)
            out.append(
                LogUsage("release", msg.sender, msg.license, entry.count, identity=entry.identity)
            )
            entry = None
        elif entry is not None:
            self.keys.remove(msg.sender, msg.license)
        if entry is not None:
            out.append(PersistKey(msg.sender, msg.license, None))
            out.append(
                LogUsage("release", msg.sender, msg.license, entry.count, identity=entry.identity)
            )
            self._steps.released(self, now, msg.license, out)
        out.append(
            Reply(token, self._msg(Released, request_id=msg.request_id, license=msg.license))
        )

    # ================================================================ admin

    def _rebalance_released(self, now: float, lic: str, out: list[Effect]) -> None:
        """Leading: seats a release freed may go where the table still lacks them."""
        if self._lead().short:
            self._rebalance(now, lic, out)

    def _on_status(self, now: float, token: str, msg: StatusRequest, out: list[Effect]) -> None:
        out.append(
            Reply(token, self._msg(StatusReply, request_id=msg.request_id, status=self.status(now)))
        )

    def _on_reclaim(self, now: float, token: str, msg: Reclaim, out: list[Effect]) -> None:
        entry = self.keys.remove(msg.client_id, msg.license)
        if entry is None:
            reply = self._msg(
                AdminReply,
                request_id=msg.request_id,
                ok=False,
                message=f"{msg.client_id} holds no {msg.license!r} on {self.id}",
            )
        else:
            # the reclaim sticks: the client's next heartbeat is told so, finally
            self.reclaimed[(msg.client_id, msg.license)] = (
                now + self.clocks.client_keep,
                msg.reason,
            )
            out.append(PersistKey(msg.client_id, msg.license, None))
            out.append(LogUsage("reclaim", msg.client_id, msg.license, entry.count, msg.reason,
                                identity=entry.identity))  # fmt: skip
            out.append(
                self._note(now, "reclaim", f"{msg.client_id} {msg.license} reclaimed: {msg.reason}")
            )
            reply = self._msg(
                AdminReply,
                request_id=msg.request_id,
                ok=True,
                message=f"reclaimed {entry.count} of {msg.license!r} from {msg.client_id}",
            )
        out.append(Reply(token, reply))

    def _on_admin(self, now: float, token: str, msg: Message, out: list[Effect]) -> None:
        self._admin(now, token, None, msg, out)

    def _on_forwarded(
        self, now: float, sender: str, msg: ForwardedAdmin, out: list[Effect]
    ) -> None:
        if not isinstance(msg.op, CONFIG_CHANGES) or msg.op.pool != self.pool:
            reply = self._msg(
                AdminReply,
                request_id=getattr(msg.op, "request_id", 0),
                ok=False,
                message="not an admin operation of this pool",
            )
            out.append(Send(sender, self._msg(ForwardedReply, token=msg.token, reply=reply)))
            return
        self._admin(now, msg.token, sender, msg.op, out)

    def _on_forwarded_reply(
        self, now: float, sender: str, msg: ForwardedReply, out: list[Effect]
    ) -> None:
        out.append(Reply(msg.token, msg.reply))

    def _admin(
        self, now: float, token: str, via: str | None, msg: Message, out: list[Effect]
    ) -> None:
        """An admin operation asked here (`via` None) or forwarded by follower `via`."""
        self._steps.admin(self, now, token, via, msg, out)

    def _refuse_admin(
        self, now: float, token: str, via: str | None, msg: Message, why: str, out: list[Effect]
    ) -> None:
        request_id = int(getattr(msg, "request_id", 0))
        reply = self._msg(AdminReply, request_id=request_id, ok=False, message=why)
        out.append(self._note(now, "refused", f"{type(msg).__name__}: {why}"))
        if via is None:
            out.append(Reply(token, reply))
        else:
            out.append(Send(via, self._msg(ForwardedReply, token=token, reply=reply)))

    def _admin_checked_here(
        self, now: float, token: str, via: str | None, msg: Message, out: list[Effect]
    ) -> bool:
        """Not leading: refuse an operation forwarded to me; check one asked here (a
        cheap local check first, so an invalid op is refused here). True if it passed."""
        if via is not None:
            self._refuse_admin(now, token, via, msg, f"{self.id} is not the leader", out)
            return False
        try:
            check_admin(msg, self.rlf, self.table, self.today)
        except Refused as err:
            self._refuse_admin(now, token, via, msg, str(err), out)
            return False
        return True

    def _admin_unled(
        self, now: float, token: str, via: str | None, msg: Message, out: list[Effect]
    ) -> None:
        if self._admin_checked_here(now, token, via, msg, out):
            why = "no leader right now (election in progress); retry shortly"
            self._refuse_admin(now, token, via, msg, why, out)

    def _admin_follower(
        self, now: float, token: str, via: str | None, msg: Message, out: list[Effect]
    ) -> None:
        """Following: the leader applies it (and answers through me)."""
        if not self._admin_checked_here(now, token, via, msg, out):
            return
        if self.leader_id:
            out.append(Send(self.leader_id, self._msg(ForwardedAdmin, token=token, op=msg)))
            return
        why = "no leader right now (election in progress); retry shortly"
        self._refuse_admin(now, token, via, msg, why, out)

    def _admin_leader(
        self, now: float, token: str, via: str | None, msg: Message, out: list[Effect]
    ) -> None:
        """Leading: apply it; the answer goes out once a majority holds it."""
        ld = self._lead()
        if not self._serving_lease(now):
            self._refuse_admin(now, token, via, msg, self._no_lease_why(now), out)
            return
        try:
            message, data = self._apply_admin(now, msg, out)
        except Refused as err:
            self._refuse_admin(now, token, via, msg, str(err), out)
            return
        request_id = int(getattr(msg, "request_id", 0))
        ld.pending.append(
            PendingAdmin(
                cfg=self.table.cfg,
                rlf_seq=self.rlf.sequence,
                request_id=request_id,
                token=token,
                via=via,
                deadline=now + self.clocks.admin_timeout,
                message=message,
                data=dict(data, config_version=self.table.cfg[1], rlf_seq=self.rlf.sequence),
            )
        )
        self._check_pending(now, out)

    def _apply_admin(
        self, now: float, msg: Message, out: list[Effect]
    ) -> tuple[str, dict[str, Any]]:
        check_admin(msg, self.rlf, self.table, self.today)
        if isinstance(msg, ChangeDistribution):
            dist = dict(msg.distribution)
            self.table.set_distribution(msg.license, dist, self.servers)
            out.append(self._note(now, "admin", f"distribution of {msg.license} set: {dist}"))
            self._table_changed(now, out, msg.license)
            return (f"distribution of {msg.license!r} changed", {})
        if isinstance(msg, (AddAllocations, AddLicenseCode)):
            code = check_code(msg.code, self.rlf, self.table, self.today)
            self.table.codes.append(code.text())
            self.table.add_code(code, self.servers)
            out.append(self._note(now, "admin", f"code added: {code.describe()}"))
            self._table_changed(now, out, code.license)
            state = self.table.licenses[code.license]
            return (
                f"{code.seats} seats of {code.license!r} added (hard limit {state.hard_limit})",
                {"license": code.license, "hard_limit": state.hard_limit},
            )
        if isinstance(msg, DrainServer):
            return self._drain(now, msg, out)
        if not isinstance(msg, UpdateRlf):
            raise EngineBug(f"{type(msg).__name__} routed to the admin path")
        new = check_rlf(msg.rlf_text, self.rlf)
        if self.id not in new.server_ids:
            raise Refused(
                f"RLF seq {new.sequence} removes the leader {self.id}: stop {self.id}, "
                "then push it once another server leads"
            )
        self._adopt_rlf(now, new, msg.rlf_text, out)
        return (f"RLF sequence {new.sequence} installed", {})

    def _drain(self, now: float, msg: DrainServer, out: list[Effect]) -> tuple[str, dict[str, Any]]:
        """Drain a server or put it back in service (see `drain`)."""
        ld = self._lead()
        if msg.drain and msg.server == self.id:
            raise Refused(
                f"{self.id} leads the pool and cannot be drained: drain the followers, "
                "or stop it (its clients fail over) and drain it once another server leads"
            )
        if not msg.drain and msg.server != self.id:
            left = drain.unapplied(
                self.table,
                msg.server,
                ld.revoke_seq.get(msg.server, {}),
                ld.peer(msg.server).acked_seq,
            )
            if left:
                raise Refused(
                    f"{msg.server} has not yet applied {len(left)} move(s) of its clients; "
                    "retry in a moment"
                )
        drain.apply(self.table, msg.server, msg.drain, (self.term, self.table.cfg[1] + 1))
        word = "drained" if msg.drain else "back in service"
        out.append(self._note(now, "admin", f"{msg.server} {word}", server=msg.server))
        self._table_changed(now, out)
        return (f"{msg.server} {word}", {"server": msg.server, "drained": msg.drain})

    # ================================================================ status

    def _in_contact(self, now: float) -> set[str]:
        """Leading: the servers in contact with me (status)."""
        return set(self._up(now))

    def status(self, now: float) -> ServerStatus:
        """This server's view, JSON-able (built by `status.server_status`)."""
        return server_status(
            self,
            now,
            up=self._steps.in_contact(self, now),
            why=self._not_serving(now),
            grace_held=lambda lic, in_use: self._grace_held(now, lic, in_use),
            limit=self._limit,
            events=list(self._events),
        )


# messages that only mean something in the sender's current term
_TERMED = frozenset({ServerHeartbeat, ServerAck, DistributionSync, BorrowRequest, BorrowGrant})

# ---------------------------------------------------------------- steps per role

_Handler = Callable[[LicenseServer, float, str, Any, list[Effect]], None]
_Change = Callable[[LicenseServer, float, list[Effect]], None]


def _ignore(srv: LicenseServer, now: float, sender: str, msg: Message, out: list[Effect]) -> None:
    """A message that means nothing in this role (a leader's business): dropped."""


def _no_change(srv: LicenseServer, now: float, out: list[Effect]) -> None:
    """Nothing to do in this role."""


@dataclass(frozen=True, slots=True)
class _Steps:
    """What a server does in one role, like raft's `step`/`tick` functions: `_become`
    swaps the whole set, so no handler tests the role. Each field is one place where
    roles differ; everything else is common."""

    role: Role
    handlers: Mapping[type, _Handler]  # message type -> its handler in this role
    enter: _Change  # on becoming this role (after leaving the old one)
    leave: _Change  # on leaving it
    tick: _Change  # the role's timers (after the common ones)
    deadline: Callable[[LicenseServer], float]  # when `tick` has work next
    new_term: Callable[[LicenseServer, int, float, list[Effect]], None]  # a higher term seen
    accept_leader: Callable[[LicenseServer, float, str, int, list[Effect]], bool]
    leader_alive: Callable[[LicenseServer, float], bool]  # leader stickiness (votes)
    serving: Callable[[LicenseServer, float], bool]  # may issue and renew now
    not_serving: Callable[[LicenseServer, float], tuple[str, str] | None]  # why not
    limit: Callable[[LicenseServer, str], int]  # seats of a license I may serve
    allowances: Callable[[LicenseServer], dict[str, int]]  # all of them (persisted)
    borrow: Callable[[LicenseServer, float, str, int, bool, list[Effect], int], None]
    claim: Callable[[LicenseServer, float, ClientHeartbeat, list[Effect]], None]
    released: Callable[[LicenseServer, float, str, list[Effect]], None]
    new_day: _Change
    install_rlf: Callable[[LicenseServer, float, str, list[str], list[Effect]], None]
    leave_pool: _Change  # a newer RLF does not list me
    admin: Callable[[LicenseServer, float, str, str | None, Message, list[Effect]], None]
    in_contact: Callable[[LicenseServer, float], set[str]]  # for the status


_S = LicenseServer
_ADMIN_OPS = (ChangeDistribution, AddAllocations, AddLicenseCode, UpdateRlf, DrainServer)

# messages every role handles alike (the handler may still ask the role's steps)
_COMMON: dict[type, _Handler] = {
    Request: _S._on_client,
    ClientHeartbeat: _S._on_client,
    Release: _S._on_client,
    StatusRequest: _S._on_status,
    Reclaim: _S._on_reclaim,
    **dict.fromkeys(_ADMIN_OPS, _S._on_admin),
    ServerHeartbeat: _S._on_heartbeat,
    ServerAck: _S._only_term,
    LeaderCheck: _ignore,
    VoteRequest: _S._on_vote_request,
    VoteReply: _S._only_term,
    ServerUp: _S._on_server_up,
    ServerUpReply: _S._on_server_up_reply_unled,
    RlfOffer: _S._on_rlf_offer,
    RlfAccept: _S._on_rlf_accept,
    RlfTransfer: _S._on_rlf_transfer,
    BorrowRequest: _ignore,
    BorrowGrant: _S._on_borrow_grant,
    DistributionSync: _S._on_sync,
    ForwardedAdmin: _S._on_forwarded,
    ForwardedReply: _S._on_forwarded_reply,
}

# server<->server messages: the rest come from clients and admins
_SERVER_MSGS = frozenset(_COMMON) - {Request, ClientHeartbeat, Release, StatusRequest, Reclaim}
_SERVER_MSGS -= frozenset(_ADMIN_OPS)

# STARTING: just up, listening for a leader; the other roles differ from it as below
_STARTING = _Steps(
    role=Role.STARTING,
    handlers=_COMMON,
    enter=_no_change,
    leave=_no_change,
    tick=_S._tick_unled,
    deadline=_S._deadline_unled,
    new_term=lambda srv, term, now, out: None,
    accept_leader=_S._follow,
    leader_alive=lambda srv, now: False,
    serving=lambda srv, now: False,
    not_serving=_S._why_electing,
    limit=_S._limit_as_follower,
    allowances=_S._allowances_as_follower,
    borrow=lambda srv, now, lic, want, failover, out, gather: None,
    claim=_S._claim_via_leader,
    released=lambda srv, now, lic, out: None,
    new_day=_no_change,
    install_rlf=_S._install_rlf,
    leave_pool=_no_change,
    admin=_S._admin_unled,
    in_contact=lambda srv, now: set(),
)

_STEPS: dict[Role, _Steps] = {
    Role.STARTING: _STARTING,
    Role.FOLLOWER: replace(
        _STARTING,
        role=Role.FOLLOWER,
        handlers={
            **_COMMON,
            ServerUp: _S._on_server_up_follower,
            ServerUpReply: _S._on_server_up_reply,
        },
        enter=_S._enter_follower,
        tick=_S._tick_follower,
        deadline=_S._deadline_follower,
        accept_leader=_S._keep_following,
        leader_alive=_S._alive_as_follower,
        serving=_S._has_lease,
        not_serving=_S._why_not_following,
        borrow=_S._borrow_as_follower,
        admin=_S._admin_follower,
    ),
    Role.CANDIDATE: replace(
        _STARTING,
        role=Role.CANDIDATE,
        handlers={
            **_COMMON,
            VoteRequest: _S._on_vote_request_candidate,
            VoteReply: _S._on_vote_reply,
            ServerUp: _S._on_server_up_candidate,
        },
        enter=_S._enter_candidate,
        tick=_S._tick_candidate,
        new_term=_S._yield_to_term,
    ),
    Role.DISASSOCIATED: replace(
        _STARTING,
        role=Role.DISASSOCIATED,
        enter=_S._enter_disassociated,
        not_serving=_S._why_disassociated,
    ),
    Role.LEADER: _Steps(
        role=Role.LEADER,
        handlers={
            **_COMMON,
            ServerAck: _S._on_ack,
            LeaderCheck: _S._on_leader_check,
            ServerUp: _S._on_server_up_leader,
            ServerUpReply: _S._on_server_up_reply,
            BorrowRequest: _S._on_borrow_request,
        },
        enter=_S._enter_leader,
        leave=_S._drop_leader_state,
        tick=_S._tick_leader,
        deadline=_S._deadline_leader,
        new_term=_S._yield_to_term,
        accept_leader=_S._second_leader,
        leader_alive=_S._alive_as_leader,
        serving=_S._serving_lease,
        not_serving=_S._why_not_leading,
        limit=_S._limit_as_leader,
        allowances=_S._allowances_as_leader,
        borrow=_S._borrow_as_leader,
        claim=_S._claim_as_leader,
        released=_S._rebalance_released,
        new_day=_S._new_day_leader,
        install_rlf=_S._install_rlf_leader,
        leave_pool=_S._step_down_removed,
        admin=_S._admin_leader,
        in_contact=_S._in_contact,
    ),
}
if any(set(steps.handlers) != set(_COMMON) for steps in _STEPS.values()):
    raise EngineBug("every role must handle the same message types")
