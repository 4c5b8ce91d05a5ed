"""The client side of the pool as a sans-IO state machine (request, heartbeat, fail-over).

Theory of operation
-------------------
A protected program holds at most one authorization (``count`` seats of one license)
at a time. `ClientMachine` decides what to send and to whom; the caller (the runtime's
client library, or the simulator) carries the effects out and feeds answers back.

Doors in (``now`` is the client's own monotonic clock, in seconds)::

    acquire(now)                  -> list[ClientEffect]   # start wanting a seat
    release(now)                  -> list[ClientEffect]   # give it back (stops believing at once)
    handle(now, server_id, msg)   -> list[ClientEffect]   # an Authorize / Deny / Released
    tick(now)                     -> list[ClientEffect]   # timers; call at or after next_deadline

Door out: `SendTo(server, msg)` (send ``msg`` to pool member ``server``), and the
notifications `Authorized`, `Lost`, `Denied`, `ReleasedLocally`.

States (`ClientState`)::

                                          transient Deny, lease comfortable:
                                          ask the same server again later
                                                  ┌──┐
                                                  v  │
    IDLE ──acquire──> REQUESTING ──Authorize──> HOLDING ──server down / final for it──> FAILOVER
      ^                    │ Deny (walk list)      ^     / lease nearly out               │
      │                    v                       └────────── Authorize ─────────────────┘
      └──── release ── WAITING (denied everywhere; retries after a back-off)

* The client picks its server (the patent's clients choose): ``home`` first, then the
  list order.
* Leases are measured from the *send* time of the Request / ClientHeartbeat that an
  Authorize answers (matched by ``request_id``; every message gets a fresh one), never
  from the arrival of the answer, so the client never believes it holds longer than the
  server counts it. A late or duplicated Authorize can only extend the lease to
  ``sent_at + lease`` of its own request.
* While HOLDING the client heartbeats its server every ``heartbeat_interval`` (from the
  Authorize). The patent's client goes into fail-over mode when its server is *down*,
  so what it does on a failed heartbeat depends on what the failure says:

  - no answer within ``answer_timeout``, or the runtime's ``unreachable`` (server down),
    or a refusal that is final for that server (``disassociated``, or any reason not
    listed below): fail over at once;
  - a refusal in `TRANSIENT_REASONS` (``no_majority``, ``restart_grace``, ``no_seats``:
    the server is alive but cannot serve *now*, e.g. during a leader election): while
    the lease has comfortable time left, ask the *same* server again, after
    ``max(retry_after, retry_floor)`` but no later than ``heartbeat_interval +
    answer_timeout`` before the lease runs out; a refusal with less time left than
    that (plus ``retry_floor``) fails over. So an election does not make every client
    of a healthy follower change server (FIG. 9/10: only the dead leader's client moves).
    Nothing is believed longer for it: the lease still runs from the send time of the
    last heartbeat that was authorized.

  FAILOVER walks the server list from the last Authorize (leader priority order, the
  failed server last) sending ``ClientHeartbeat(failover=True)`` with the *ticket* of
  the authorization it holds (from the last Authorize): a server that does not know the
  client adopts it and claims exactly those seats from the server that granted them
  (FIG. 10; `lm_core.engine.claims`). On any Deny or a timeout it tries the next server
  (it is looking for a server that serves now). A walk that ends while the client still
  believes its lease is retried soon (``max(retry_floor, min(retry_after,
  heartbeat_interval / 4))``: the pool is usually electing), and skips the servers that
  did not answer for one heartbeat interval (a dead server costs one answer timeout per
  interval, not per walk; a paused one that comes back is asked again). It keeps
  believing its old lease until that lease runs out (then it emits `Lost` and keeps
  walking, presenting its ticket for one more lease). A late answer from the server it
  gave up on, to a request sent before, is ignored: its seat may have moved.
* A fresh request that is denied walks the list the same way; after a full walk of
  denials the client either gives up (``retry=False``: `Denied`, back to IDLE) or waits
  ``max(retry_after, retry_backoff)`` and starts again (WAITING).
* ``unknown_license``, ``expired``, ``bad_request`` and ``reclaimed`` are final: the
  client stops wanting the seat (`Denied` / `Lost`).
* `release` sends Release to the server that holds the client and forgets the lease at
  once; an Authorize arriving later for an old request is answered with a Release.

Nothing here reads a clock, a socket or a random generator.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from lm_core.engine.identity import ClientIdentity
from lm_core.engine.leases import ANSWER_TIMEOUT
from lm_core.engine.messages import (
    Authorize,
    ClientHeartbeat,
    Deny,
    Message,
    Release,
    Released,
    Request,
    ServerAddress,
)
from lm_core.engine.vocab import DenyReason

FINAL_REASONS = frozenset(
    {
        DenyReason.UNKNOWN_LICENSE,
        DenyReason.EXPIRED,
        DenyReason.BAD_REQUEST,
        DenyReason.RECLAIMED,
    }
)
# The holding server is alive but cannot renew right now: worth asking it again.
TRANSIENT_REASONS = frozenset(
    {DenyReason.NO_MAJORITY, DenyReason.RESTART_GRACE, DenyReason.NO_SEATS}
)
_MAX_PENDING = 16  # request ids remembered for matching late answers


class ClientState(enum.Enum):
    IDLE = "idle"
    REQUESTING = "requesting"
    HOLDING = "holding"
    FAILOVER = "failover"
    WAITING = "waiting"


@dataclass(frozen=True, slots=True)
class SendTo:
    """Send ``msg`` to pool member ``server`` (an id; `ClientMachine.address_of` maps it)."""

    server: str
    msg: Message


@dataclass(frozen=True, slots=True)
class Authorized:
    """The client holds ``count`` seats from ``server`` until ``expires`` (its own clock).
    ``renewed`` is False for a fresh grant or a fail-over adoption."""

    server: str
    license: str
    count: int
    expires: float
    renewed: bool


@dataclass(frozen=True, slots=True)
class Lost:
    """The client no longer holds its authorization (lease ran out, or reclaimed)."""

    license: str
    reason: str


@dataclass(frozen=True, slots=True)
class Denied:
    """A request was refused. ``final`` is True when the machine stopped trying."""

    license: str
    reason: str
    detail: str
    final: bool


@dataclass(frozen=True, slots=True)
class ReleasedLocally:
    """The client gave its authorization back (sent Release; no longer believes it)."""

    license: str


ClientEffect = SendTo | Authorized | Lost | Denied | ReleasedLocally


class ClientMachine:
    """One program's authorization for one license; see the module docstring."""

    def __init__(
        self,
        client_id: str,
        pool: str,
        license: str,
        servers: Sequence[ServerAddress],
        *,
        count: int = 1,
        home: str | None = None,
        answer_timeout: float = ANSWER_TIMEOUT,
        heartbeat_interval: float = 2.0,
        retry: bool = True,
        retry_backoff: float = 2.0,
        retry_floor: float = 0.25,
        identity: ClientIdentity | None = None,
    ) -> None:
        if not servers:
            raise ValueError("a client needs at least one server")
        self.client_id = client_id
        self.pool = pool
        self.license = license
        self.count = count
        self.servers: tuple[ServerAddress, ...] = tuple(servers)
        self.home = home if home is not None else self.servers[0].id
        self.answer_timeout = answer_timeout
        self.heartbeat_interval = heartbeat_interval
        self.retry = retry
        self.retry_backoff = retry_backoff
        self.retry_floor = retry_floor
        self.identity = identity  # sent with requests and fail-over heartbeats

        self.state = ClientState.IDLE
        self.server: str | None = None  # the server that holds (or is being asked)
        self.lease_expires: float | None = None  # own clock; None = believes nothing
        self._next_id = 1
        self._pending: dict[int, tuple[float, str]] = {}  # request_id -> (sent_at, server)
        self._waiting_id: int | None = None  # the request whose answer we wait for
        self._answer_deadline = float("inf")
        self._next_heartbeat = float("inf")
        self._retry_at = float("inf")
        self._walk: list[str] = []  # servers still to try in this walk
        self._walk_failover = False
        self._failed: str | None = None  # the server that failed us (walked last)
        self._last_deny: tuple[str, str] = ("", "")
        self._retry_hint = 0.0
        self.ticket = ""  # the ticket of the authorization held (from the last Authorize)
        self._ticket_until = 0.0  # presented in fail-over until then (one lease past it)
        # servers that did not answer in this fail-over, skipped in walks until then
        self._silent: dict[str, float] = {}
        self._gave_up_at = 0  # first request id sent after leaving `_failed`

    # ------------------------------------------------------------------ queries

    def holds(self, now: float) -> bool:
        """True while the client believes it holds an unexpired authorization."""
        return self.lease_expires is not None and now < self.lease_expires

    @property
    def wants(self) -> bool:
        return self.state is not ClientState.IDLE

    @property
    def next_deadline(self) -> float:
        d = min(self._answer_deadline, self._next_heartbeat, self._retry_at)
        if self.lease_expires is not None:
            d = min(d, self.lease_expires)
        return d

    def address_of(self, server_id: str) -> str | None:
        for s in self.servers:
            if s.id == server_id:
                return s.address
        return None

    # ------------------------------------------------------------------ doors in

    def acquire(self, now: float) -> list[ClientEffect]:
        """Start wanting a seat (no-op if already wanting one)."""
        if self.state is not ClientState.IDLE:
            return []
        self._start_walk(now, self.home, failover=False)
        self.state = ClientState.REQUESTING
        return self._send_next(now)

    def release(self, now: float) -> list[ClientEffect]:
        """Give the seat back: send Release to the holding server, forget the lease."""
        out: list[ClientEffect] = []
        if self.state is ClientState.IDLE:
            return out
        if self.server is not None and (self.lease_expires is not None or self._pending):
            out.append(SendTo(self.server, self._release_msg()))
        had = self.lease_expires is not None
        self._reset_idle()
        if had:
            out.append(ReleasedLocally(self.license))
        return out

    def handle(self, now: float, server_id: str, msg: Message) -> list[ClientEffect]:
        if isinstance(msg, Authorize):
            return self._on_authorize(now, server_id, msg)
        if isinstance(msg, Deny):
            return self._on_deny(now, server_id, msg)
        if isinstance(msg, Released):
            return []
        return []

    def tick(self, now: float) -> list[ClientEffect]:
        out: list[ClientEffect] = []
        if self.lease_expires is not None and now >= self.lease_expires:
            self.lease_expires = None
            out.append(Lost(self.license, "lease expired"))
            if self.state is ClientState.HOLDING:
                out += self._enter_failover(now)
                return out
        if self.state is ClientState.IDLE:
            return out
        if now >= self._answer_deadline:
            self._answer_deadline = float("inf")
            self._waiting_id = None
            if self.state is ClientState.HOLDING:
                out += self._enter_failover(now)
            else:
                if self.state is ClientState.FAILOVER and self.server is not None:
                    self._silent[self.server] = now + self.heartbeat_interval
                self._last_deny = ("timeout", f"no answer from {self.server}")
                out += self._send_next(now)
        if self.state is ClientState.HOLDING and now >= self._next_heartbeat:
            out += self._heartbeat(now)
        if self.state is ClientState.WAITING and now >= self._retry_at:
            self._retry_at = float("inf")
            # a client whose lease ran out keeps presenting its ticket: its seats can
            # still follow it for a while (the claim window outlasts the lease)
            failover = self._claiming(now)
            first = (self._failed or self.home) if failover else self.home
            self._start_walk(now, first, failover=failover)
            self.state = ClientState.FAILOVER if failover else ClientState.REQUESTING
            out += self._send_next(now)
        return out

    # ------------------------------------------------------------------ internals

    def _reset_idle(self) -> None:
        self.state = ClientState.IDLE
        self.lease_expires = None
        self.ticket = ""
        self._silent = {}
        self._waiting_id = None
        self._answer_deadline = float("inf")
        self._next_heartbeat = float("inf")
        self._retry_at = float("inf")
        self._walk = []

    def _release_msg(self) -> Release:
        rid = self._new_id()
        return Release(pool=self.pool, sender=self.client_id, request_id=rid, license=self.license)

    def _new_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    def _remember(self, rid: int, now: float, server: str) -> None:
        self._pending[rid] = (now, server)
        if len(self._pending) > _MAX_PENDING:
            del self._pending[min(self._pending)]

    def _start_walk(self, now: float, first: str, *, failover: bool) -> None:
        ids = [s.id for s in self.servers]
        if failover:
            # Leader-priority order, the server that failed us last; servers that did
            # not answer in this fail-over are skipped while another may serve.
            walk = [i for i in ids if i != first] + ([first] if first in ids else [])
            # ... for one heartbeat interval: a paused server that comes back is asked
            # again after
            self._walk = [i for i in walk if self._silent.get(i, 0.0) <= now] or walk
        else:
            self._walk = ([first] if first in ids else []) + [i for i in ids if i != first]
        self._walk_failover = failover
        self._retry_hint = 0.0

    def _send_next(self, now: float) -> list[ClientEffect]:
        """Ask the next server of the current walk; after the last one, wait or give up."""
        if not self._walk:
            return self._walk_exhausted(now)
        target = self._walk.pop(0)
        self.server = target
        rid = self._new_id()
        self._remember(rid, now, target)
        self._waiting_id = rid
        self._answer_deadline = now + self.answer_timeout
        msg: Message
        if self._walk_failover:
            msg = ClientHeartbeat(
                pool=self.pool,
                sender=self.client_id,
                request_id=rid,
                license=self.license,
                count=self.count,
                failover=True,
                ticket=self.ticket,
                identity=self.identity,
            )
        else:
            msg = Request(
                pool=self.pool,
                sender=self.client_id,
                request_id=rid,
                license=self.license,
                count=self.count,
                identity=self.identity,
            )
        return [SendTo(target, msg)]

    def _claiming(self, now: float) -> bool:
        """Still holding, or lapsed so recently that its ticket may still move its seats."""
        return self.lease_expires is not None or (bool(self.ticket) and now < self._ticket_until)

    def _walk_exhausted(self, now: float) -> list[ClientEffect]:
        reason, detail = self._last_deny
        self._waiting_id = None
        self._answer_deadline = float("inf")
        if not self.retry and self.lease_expires is None:
            self._reset_idle()
            return [Denied(self.license, reason or DenyReason.NO_SEATS, detail, final=True)]
        self.state = ClientState.WAITING
        if self._claiming(now):
            # still holding (or its seats may still follow it): the pool is most likely
            # electing a leader; ask again soon
            soon = min(self._retry_hint or self.retry_backoff, self.heartbeat_interval / 4)
            self._retry_at = now + max(self.retry_floor, soon)
        else:
            self._retry_at = now + max(self._retry_hint, self.retry_backoff)
        return [Denied(self.license, reason or DenyReason.NO_SEATS, detail, final=False)]

    def _heartbeat(self, now: float) -> list[ClientEffect]:
        assert self.server is not None
        rid = self._new_id()
        self._remember(rid, now, self.server)
        self._waiting_id = rid
        self._answer_deadline = now + min(self.answer_timeout, self.heartbeat_interval)
        self._next_heartbeat = now + self.heartbeat_interval
        msg = ClientHeartbeat(
            pool=self.pool,
            sender=self.client_id,
            request_id=rid,
            license=self.license,
            count=self.count,
        )
        return [SendTo(self.server, msg)]

    def _enter_failover(self, now: float) -> list[ClientEffect]:
        self.state = ClientState.FAILOVER
        self._silent = {}
        self._gave_up_at = self._next_id
        self._next_heartbeat = float("inf")
        self._failed = self.server
        self._start_walk(now, self.server or self.home, failover=True)
        return self._send_next(now)

    def _on_authorize(self, now: float, server_id: str, msg: Authorize) -> list[ClientEffect]:
        if msg.license != self.license:
            return []
        sent = self._pending.get(msg.request_id)
        if sent is None:
            return []
        if server_id == self._failed and msg.request_id < self._gave_up_at:
            # A late answer from the server we gave up on, to a request sent before:
            # our ticket may have moved its seat elsewhere since; it is not ours.
            return []
        if self.state is ClientState.IDLE:
            # A late grant after we let go: give the seat straight back.
            self._pending.pop(msg.request_id, None)
            return [SendTo(server_id, self._release_msg())]
        sent_at, _ = sent
        expires = sent_at + msg.lease
        if expires <= now:
            return []  # answered too late to be worth anything
        renewed = self.state is ClientState.HOLDING and self.server == server_id
        if self.lease_expires is None or expires > self.lease_expires:
            self.lease_expires = expires
        if msg.servers:
            self.servers = msg.servers
        if msg.ticket:
            self.ticket = msg.ticket
            self._ticket_until = self.lease_expires + msg.lease
        self._silent = {}
        if msg.heartbeat_interval > 0:
            self.heartbeat_interval = msg.heartbeat_interval
        was = self.state
        self.state = ClientState.HOLDING
        self.server = server_id
        self._walk = []
        self._retry_at = float("inf")
        if msg.request_id == self._waiting_id or was is not ClientState.HOLDING:
            self._waiting_id = None
            self._answer_deadline = float("inf")
        if was is not ClientState.HOLDING or self._next_heartbeat == float("inf"):
            self._next_heartbeat = sent_at + self.heartbeat_interval
        return [Authorized(server_id, self.license, self.count, self.lease_expires, renewed)]

    def _on_deny(self, now: float, server_id: str, msg: Deny) -> list[ClientEffect]:
        if msg.license == self.license:
            self._silent.pop(server_id, None)  # it answers: worth asking in the next walk
        if msg.license != self.license or msg.request_id != self._waiting_id:
            return []  # a stale answer: only the request we wait for may move us
        self._waiting_id = None
        self._answer_deadline = float("inf")
        self._last_deny = (msg.reason, msg.detail)
        self._retry_hint = max(self._retry_hint, msg.retry_after)
        if msg.reason in FINAL_REASONS:
            lost = self.lease_expires is not None
            self._reset_idle()
            out: list[ClientEffect] = []
            if lost:
                out.append(Lost(self.license, msg.reason))
            out.append(Denied(self.license, msg.reason, msg.detail, final=True))
            return out
        if self.state is ClientState.HOLDING:
            again = self._retry_same_at(now, msg)
            if again is not None:
                self._next_heartbeat = again
                return []
            return self._enter_failover(now)
        if self.state in (ClientState.REQUESTING, ClientState.FAILOVER):
            return self._send_next(now)
        return []

    def _retry_same_at(self, now: float, msg: Deny) -> float | None:
        """When to heartbeat the holding server again after it refused ``msg``; None: walk.

        Only for a refusal that says the server is alive but cannot serve now, and only
        while the lease leaves time for one more heartbeat round and a walk after it."""
        if msg.reason not in TRANSIENT_REASONS or self.lease_expires is None:
            return None
        latest = self.lease_expires - (self.heartbeat_interval + self.answer_timeout)
        if latest < now + self.retry_floor:
            return None
        return min(now + max(msg.retry_after, self.retry_floor), latest)
