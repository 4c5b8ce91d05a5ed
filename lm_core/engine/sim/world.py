"""The simulated world: servers, clients, an admin, a network and a virtual clock.

Theory of operation
-------------------
One event queue ordered by true time (then by insertion), so a run is a pure function
of the seed. Events: deliver a message to a server / client / the admin, a server or
client timer, a client changing its mind (wants a seat / lets go), a fault starting or
ending, an admin operation, a check.

* Every server has its own clock ``offset + rate * t`` with ``|rate - 1| <= drift``;
  clients too. Engines only ever see their own clock.
* A server is stepped with `handle(now, sender, msg)` / `tick(now)`; its effects are
  carried out in order. `PersistState` / `PersistKey` go to its "disk" (kept by the
  world); a crash keeps the disk and nothing else. A crash can strike in the middle of
  carrying out one step's effects: a prefix is carried out, the rest is lost.
* A paused server (GC, SIGSTOP) keeps its clock running but processes nothing; what
  arrives meanwhile is handled when it wakes, in order.
* Timers: after each step the world asks the engine for ``next_deadline`` and
  schedules a tick then (and at least every ``max_tick_gap`` local seconds, default
  four heartbeat intervals). A deadline still in the past right after a tick would make
  a runtime spin: it is counted in ``stats.stale_deadlines``.
* Checkers (see `invariants`) run after every step that can change what they watch:
  S1 on every change of a client's believed lease, one-leader-per-term on every role
  change, S2 after leader steps that changed the table (at most once per heartbeat).
* Admin operations travel like client messages (token ``admin:N``); a valid code that
  reaches any server raises the S1 limit from then on (the customer owns those seats).
* L2 (when the runner sets ``l2``, a `FailoverLedger`): at each fault's start the world
  decides whether it opens a window (single fault, settled pool, see the ledger), tells
  the ledger of every client authorization, lost lease and release, of every other
  fault, fault end and admin operation, and wakes it at its deadlines.
* An engine step (server or client) that raises, or a server step that emits
  ``Event("bug")``, is a failure: ``Violation("BUG", ...)``, never carried on from.
"""

from __future__ import annotations

import functools
import heapq
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from lm_core.engine.claims import TEST_CLAIM_KEY
from lm_core.engine.client import Authorized, ClientMachine, ClientState, Lost, SendTo
from lm_core.engine.effects import (
    Event,
    LogUsage,
    Persisted,
    PersistKey,
    PersistState,
    Reply,
    Send,
)
from lm_core.engine.leases import ANSWER_TIMEOUT
from lm_core.engine.messages import (
    AdminReply,
    Message,
    ServerAddress,
)
from lm_core.engine.rlf import Rlf
from lm_core.engine.sim.faults import Fault
from lm_core.engine.sim.invariants import (
    L2_KINDS,
    AdminLedger,
    FailoverLedger,
    LeaderTerms,
    SeatLedger,
    Violation,
    check_conservation,
)
from lm_core.engine.sim.network import Network
from lm_core.engine.sim.rng import Rng
from lm_core.engine.sim.trace import Trace
from lm_core.engine.status_types import ServerStatus

INF = float("inf")

# event kinds (ints: cheap to compare)
DELIVER_SERVER, DELIVER_CLIENT, DELIVER_ADMIN, SERVER_TICK, CLIENT_TICK = 0, 1, 2, 3, 4
CLIENT_TOGGLE, FAULT_START, FAULT_END, CALL = 5, 6, 7, 8


class Engine(Protocol):
    """What the world needs from a server engine (`LicenseServer` is one)."""

    def handle(self, now: float, sender: str, msg: Message) -> list[Any]: ...
    def tick(self, now: float) -> list[Any]: ...
    def status(self, now: float) -> ServerStatus: ...
    @property
    def next_deadline(self) -> float: ...


ServerFactory = Callable[[str, Rlf, float, date, Persisted | None], Engine]


def default_factory(
    server_id: str, rlf: Rlf, now: float, today: date, persisted: Persisted | None
) -> Engine:
    from lm_core.engine.server import LicenseServer

    return LicenseServer(
        server_id, rlf, now=now, today=today, persisted=persisted, claim_key=TEST_CLAIM_KEY
    )


def role_term(engine: Any) -> tuple[str, int]:
    """(role, term) of an engine, cheaply (attributes), falling back to status()."""
    role = getattr(engine, "role", None)
    term = getattr(engine, "term", None)
    if role is None or term is None:
        st = engine.status(0.0)
        return str(st["role"]), int(st["term"])
    return str(getattr(role, "value", role)), int(term)


@dataclass
class Node:
    """One server host: its clock, its disk, and the engine running on it (if up)."""

    id: str
    rate: float
    offset: float
    engine: Engine | None = None
    disk_state: dict[str, Any] | None = None
    disk_keys: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    paused_until: float = 0.0
    crash_pending: bool = False
    tick_at: float = INF
    incarnation: int = 0
    role: str = "down"
    term: int = 0

    def local(self, t: float) -> float:
        return self.offset + self.rate * t

    def true(self, local: float) -> float:
        return (local - self.offset) / self.rate


@dataclass
class SimClient:
    """A protected program: the client state machine, its clock, and its wish."""

    id: str
    machine: ClientMachine
    rate: float
    offset: float
    tick_at: float = INF

    def local(self, t: float) -> float:
        return self.offset + self.rate * t


@dataclass
class AdminOp:
    """One admin operation: the message, where it goes, and what the sim expects."""

    msg: Message
    target: str
    valid: bool
    kind: str
    codes: tuple[tuple[str, str, int], ...] = ()  # (serial, license, seats) it introduces
    new_license: str | None = None
    rlf_seq: int = 0
    request_id: int = 0


@dataclass
class Stats:
    server_steps: int = 0
    client_steps: int = 0
    events: int = 0
    grants: int = 0
    elections: int = 0
    crashes: int = 0
    admin_ok: int = 0
    admin_refused: int = 0
    stale_deadlines: int = 0  # engine said "tick me now" right after a tick


class World:
    """Run servers and clients under faults; raise `Violation` when a promise breaks."""

    def __init__(
        self,
        rlf: Rlf,
        rng: Rng,
        *,
        today: date,
        factory: ServerFactory = default_factory,
        trace: Trace | None = None,
        client_drift: bool = True,
        check_every_step: bool = True,
        max_tick_gap: float | None = None,
        base_delay: float = 0.001,
        jitter: float = 0.004,
    ) -> None:
        self.rlf = rlf
        self.rng = rng
        self.today = today
        self.factory = factory
        self.trace = trace or Trace()
        self.net = Network(rng, base_delay=base_delay, jitter=jitter)
        self.now = 0.0
        self.stats = Stats()
        self._q: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = 0
        timing = rlf.timing
        self.drift = timing.drift
        self.max_tick_gap = (
            max_tick_gap if max_tick_gap is not None else 4 * timing.heartbeat_interval
        )
        self.nodes: dict[str, Node] = {}
        for s in rlf.servers:
            self.nodes[s.id] = Node(
                s.id,
                rate=1.0 + self.drift * (2 * rng.random() - 1) * 0.95,
                offset=rng.uniform(10.0, 10_000.0),
            )
        self.server_list = tuple(ServerAddress(id=s.id, address=s.address) for s in rlf.servers)
        self.clients: dict[str, SimClient] = {}
        self.client_drift = client_drift
        self.check_every_step = check_every_step
        limits = {lic: t.hard_limit for lic, t in rlf.licenses(today).items()}
        self.base_limits = dict(limits)
        self.seats = SeatLedger(limits)
        self.terms = LeaderTerms()
        self.admin = AdminLedger()
        self.admin_pending: dict[int, AdminOp] = {}
        self.known_serials: set[str] = set()
        for code in rlf.license_codes():
            self.known_serials.add(code.serial)
            self.admin.serials.add(code.serial)
        self.toggle: Callable[[SimClient], float | None] | None = None
        self.on_admin_reply: Callable[[AdminOp, AdminReply], None] | None = None
        self._s2_due = False
        self._s2_next = 0.0
        self._cuts: list[Fault] = []
        self._active: list[Fault] = []  # every fault under way (any kind)
        self.l2: FailoverLedger | None = None
        self._l2_fault: Fault | None = None

    # ------------------------------------------------------------------ set-up

    def start_server(self, sid: str) -> None:
        """Boot (or reboot) server ``sid`` from its disk."""
        node = self.nodes[sid]
        if node.engine is not None:
            return
        persisted = None
        if node.disk_state is not None or node.disk_keys:
            persisted = Persisted(state=node.disk_state, keys=list(node.disk_keys.values()))
        node.incarnation += 1
        node.crash_pending = False
        node.engine = self.factory(sid, self.rlf, node.local(self.now), self.today, persisted)
        node.role, node.term = role_term(node.engine)
        self.trace.note(self.now, "start", f"{sid} up (incarnation {node.incarnation})")
        self._schedule_tick(node)

    def crash_server(self, sid: str, *, mid_step: bool = False) -> None:
        node = self.nodes[sid]
        if node.engine is None:
            return
        if mid_step:
            node.crash_pending = True  # the next step is cut short, then the node dies
            return
        self._die(node)

    def _die(self, node: Node) -> None:
        node.engine = None
        node.crash_pending = False
        node.role, node.term = "down", 0
        node.tick_at = INF
        self.stats.crashes += 1
        self.trace.note(self.now, "crash", f"{node.id} crashed")

    def add_client(
        self,
        cid: str,
        license: str,
        *,
        home: str,
        count: int = 1,
        answer_timeout: float | None = None,
        retry_backoff: float | None = None,
    ) -> SimClient:
        t = self.rlf.timing
        m = ClientMachine(
            cid,
            self.rlf.pool,
            license,
            self.server_list,
            count=count,
            home=home,
            answer_timeout=answer_timeout
            if answer_timeout is not None
            else min(ANSWER_TIMEOUT, t.client_heartbeat / 2),
            heartbeat_interval=t.client_heartbeat,
            retry=True,
            retry_backoff=retry_backoff if retry_backoff is not None else 2 * t.client_heartbeat,
        )
        rate = 1.0
        if self.client_drift:
            rate += self.drift * (2 * self.rng.random() - 1) * 0.95
        c = SimClient(cid, m, rate=rate, offset=self.rng.uniform(0.0, 1000.0))
        self.clients[cid] = c
        return c

    # ------------------------------------------------------------------ queue

    def at(self, t: float, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._q, (t, self._seq, kind, a, b, c))

    def call_at(self, t: float, fn: Callable[[], None]) -> None:
        self.at(t, CALL, fn)

    def run(self, until: float) -> None:
        """Process events up to true time ``until``."""
        q = self._q
        pop = heapq.heappop
        stats = self.stats
        while q and q[0][0] <= until:
            t, _, kind, a, b, c = pop(q)
            self.now = t
            stats.events += 1
            if kind == DELIVER_SERVER:
                self._deliver_server(a, b, c)
            elif kind == DELIVER_CLIENT:
                self._deliver_client(a, b, c)
            elif kind == CLIENT_TICK:
                cl = self.clients[a]
                if t == cl.tick_at:
                    cl.tick_at = INF
                    self._client_step(cl, None, None, tick=True)
            elif kind == SERVER_TICK:
                node = self.nodes[a]
                if t == node.tick_at and b == node.incarnation:
                    node.tick_at = INF
                    self._server_step(node, None, None)
            elif kind == CLIENT_TOGGLE:
                self._toggle(self.clients[a])
            elif kind == DELIVER_ADMIN:
                self._deliver_admin(a, c)
            elif kind == FAULT_START:
                self._fault(a, start=True)
            elif kind == FAULT_END:
                self._fault(a, start=False)
            elif kind == CALL:
                a()
        self.now = max(self.now, until)

    # ------------------------------------------------------------------ servers

    def _schedule_tick(self, node: Node, *, after_tick: bool = False) -> None:
        eng = node.engine
        if eng is None:
            return
        local_now = node.local(self.now)
        d = eng.next_deadline
        gap = local_now + self.max_tick_gap
        if d <= local_now and after_tick:
            # The engine just ticked and still says "now": a stale deadline (it would
            # make a runtime spin). Count it and fall back to the periodic tick.
            self.stats.stale_deadlines += 1
            d = gap
        if not d < gap:
            d = gap
        t = node.true(d)
        while node.local(t) < d:  # float rounding must not wake it a hair early
            t += 1e-9
        if t < self.now:
            t = self.now
        if t < node.paused_until:
            t = node.paused_until
        if t < node.tick_at:
            node.tick_at = t
            self.at(t, SERVER_TICK, node.id, node.incarnation)

    def _deliver_server(self, sid: str, sender: str, msg: Message) -> None:
        node = self.nodes[sid]
        if node.engine is None:
            return
        if self.now < node.paused_until:
            self.at(node.paused_until, DELIVER_SERVER, sid, sender, msg)
            return
        self._server_step(node, sender, msg)

    def _server_step(self, node: Node, sender: str | None, msg: Message | None) -> None:
        eng = node.engine
        assert eng is not None
        if self.now < node.paused_until:
            node.tick_at = INF
            self._schedule_tick(node)
            return
        local = node.local(self.now)
        self.stats.server_steps += 1
        try:
            if msg is None:
                self.trace.step(self.now, "tick", node.id, node.id)
                effects = eng.tick(local)
            else:
                assert sender is not None
                self.trace.step(self.now, "recv", sender, node.id, msg)
                effects = eng.handle(local, sender, msg)
        except Exception as err:
            what = "tick" if msg is None else f"{type(msg).__name__} from {sender}"
            raise Violation("BUG", f"{node.id} raised on {what}: {err!r}", self.now) from err
        cut = len(effects)
        if node.crash_pending:
            cut = int(self.rng.random() * (len(effects) + 1))
        self._carry_out(node, effects, cut)
        if node.crash_pending:
            self.trace.note(self.now, "crash", f"{node.id} dies after {cut}/{len(effects)} effects")
            self._die(node)
            return
        role, term = role_term(eng)
        if role != node.role or term != node.term:
            node.role, node.term = role, term
            self.trace.note(self.now, "role", f"{node.id} {role} term {term}")
            if role == "leader":
                self.stats.elections += 1
                self.terms.saw(self.now, node.id, term)
                self._s2_due = True
        if (
            self._s2_due
            and node.role == "leader"
            and self.check_every_step
            and self.now >= self._s2_next
        ):
            # status() is the contract but costs O(clients): at most once per heartbeat.
            self._s2_due = False
            self._s2_next = self.now + self.rlf.timing.heartbeat_interval
            check_conservation(self.now, eng.status(local))
        self._schedule_tick(node, after_tick=msg is None)

    def _carry_out(self, node: Node, effects: list[Any], cut: int) -> None:
        trace = self.trace
        for i, e in enumerate(effects):
            if i >= cut:
                break
            tp = type(e)
            if tp is Send:
                self._send_server(node.id, e.to, e.msg)
            elif tp is Reply:
                self._reply(node.id, e.to, e.msg)
            elif tp is PersistKey:
                key = (e.client_id, e.license)
                if e.entry is None:
                    node.disk_keys.pop(key, None)
                else:
                    node.disk_keys[key] = dict(e.entry)
            elif tp is PersistState:
                # A JSON round trip: the disk keeps a snapshot, and the state must be JSON.
                node.disk_state = json.loads(json.dumps(e.state))
                self._s2_due = True
            elif tp is Event:
                trace.note(self.now, e.kind, f"{node.id}: {e.text}")
                if e.kind == "bug":
                    raise Violation("BUG", f"{node.id} reported a bug: {e.text}", self.now)
                self._s2_due = True
            elif tp is LogUsage:
                if e.kind == "grant":
                    self.stats.grants += 1
            else:
                raise TypeError(f"unknown effect {e!r}")

    def _send_server(self, src: str, dst: str, msg: Message) -> None:
        if dst not in self.nodes:
            return
        net = self.net
        for d in net.delays(src, dst, client=False):
            self.at(self.now + d, DELIVER_SERVER, dst, src, msg)
        if net.faulty:
            net.remember(src, dst, msg)

    def _reply(self, src: str, token: str, msg: Message) -> None:
        if token.startswith("admin:"):
            for d in self.net.delays(src, token, client=True):
                self.at(self.now + d, DELIVER_ADMIN, token, src, msg)
            return
        if token not in self.clients:
            return
        for d in self.net.delays(src, token, client=True):
            self.at(self.now + d, DELIVER_CLIENT, token, src, msg)

    # ------------------------------------------------------------------ clients

    def _deliver_client(self, cid: str, server: str, msg: Message) -> None:
        self._client_step(self.clients[cid], server, msg, tick=False)

    def _client_step(
        self, cl: SimClient, server: str | None, msg: Message | None, *, tick: bool
    ) -> None:
        m = cl.machine
        local = cl.local(self.now)
        self.stats.client_steps += 1
        before = m.lease_expires
        try:
            if tick:
                effects = m.tick(local)
            else:
                assert server is not None
                assert msg is not None
                self.trace.step(self.now, "recv", server, cl.id, msg)
                effects = m.handle(local, server, msg)
        except Exception as err:
            raise Violation("BUG", f"client {cl.id} raised: {err!r}", self.now) from err
        self._client_effects(cl, effects)
        if m.lease_expires != before:
            self._seat_update(cl)
        self._schedule_client(cl)

    def _client_effects(self, cl: SimClient, effects: list[Any]) -> None:
        l2 = self.l2
        for e in effects:
            tp = type(e)
            if tp is SendTo:
                for d in self.net.delays(cl.id, e.server, client=True):
                    self.at(self.now + d, DELIVER_SERVER, e.server, cl.id, e.msg)
            elif tp is Authorized:
                if not e.renewed:
                    self.trace.step(self.now, "holds", e.server, cl.id, None)
                if l2 is not None:
                    l2.authorized(self.now, cl.id, e.server)
            elif tp is Lost and l2 is not None:
                l2.lost(self.now, cl.id, e.reason)

    def _seat_update(self, cl: SimClient) -> None:
        m = cl.machine
        exp = m.lease_expires
        true_exp = None if exp is None else (exp - cl.offset) / cl.rate
        self.seats.update(self.now, cl.id, m.license, m.count, true_exp)

    def _schedule_client(self, cl: SimClient) -> None:
        d = cl.machine.next_deadline
        if d == INF:
            return
        t = (d - cl.offset) / cl.rate
        while cl.offset + cl.rate * t < d:  # float rounding must not wake it a hair early
            t += 1e-9
        if t < self.now:
            t = self.now
        if t < cl.tick_at:
            cl.tick_at = t
            self.at(t, CLIENT_TICK, cl.id)

    def _toggle(self, cl: SimClient) -> None:
        m = cl.machine
        local = cl.local(self.now)
        if m.state is ClientState.IDLE:
            self._client_effects(cl, m.acquire(local))
        else:
            self._client_effects(cl, m.release(local))
            self._seat_update(cl)
            if self.l2 is not None:
                self.l2.released(cl.id)
        self.stats.client_steps += 1
        self._schedule_client(cl)
        if self.toggle is not None:
            nxt = self.toggle(cl)
            if nxt is not None:
                self.at(self.now + nxt, CLIENT_TOGGLE, cl.id)

    def want(self, cid: str, t: float) -> None:
        """Client ``cid`` changes its mind (wants a seat / lets go) at time ``t``."""
        self.at(t, CLIENT_TOGGLE, cid)

    # ------------------------------------------------------------------ admin

    def admin_send(self, op: AdminOp, token: str) -> None:
        self.admin_pending[op.request_id] = op
        if self.l2 is not None:
            self.l2.disturb(self.now, f"admin {op.kind}")
        self.trace.note(self.now, "admin", f"{op.kind} -> {op.target}: {op.msg!r}"[:200])
        for d in self.net.delays(token, op.target, client=True):
            self.at(self.now + d, DELIVER_SERVER, op.target, token, op.msg)
            self.call_at(self.now + d, functools.partial(self._admin_arrived, op))

    def _admin_arrived(self, op: AdminOp) -> None:
        """A valid code reaches the pool: its seats are the customer's from now on (S1)."""
        if not op.valid:
            return
        for serial, lic, n in op.codes:
            if serial not in self.known_serials:
                self.known_serials.add(serial)
                self.seats.raise_limit(lic, n)

    def _deliver_admin(self, token: str, msg: Message) -> None:
        if not isinstance(msg, AdminReply):
            return
        op = self.admin_pending.pop(msg.request_id, None)
        if op is None:
            return
        self.trace.note(self.now, "admin", f"{op.kind} answered ok={msg.ok}: {msg.message}")
        if msg.ok:
            self.stats.admin_ok += 1
            if not op.valid:
                raise Violation(
                    "ADMIN", f"invalid {op.kind} answered ok: {op.msg!r}"[:300], self.now
                )
            led = self.admin
            led.acked += 1
            led.rlf_seq = max(led.rlf_seq, op.rlf_seq, int(msg.data.get("rlf_seq", 0) or 0))
            led.config_version = max(
                led.config_version, int(msg.data.get("config_version", 0) or 0)
            )
            if op.new_license:
                led.licenses.add(op.new_license)
            for serial, lic, n in op.codes:
                if serial not in led.serials:
                    led.serials.add(serial)
                    led.seats[lic] = led.seats.get(lic, 0) + n
        else:
            self.stats.admin_refused += 1
            self.admin.refused += 1
        if self.on_admin_reply is not None:
            self.on_admin_reply(op, msg)

    # ------------------------------------------------------------------ faults

    def schedule_fault(self, f: Fault) -> None:
        self.at(f.start, FAULT_START, f)
        self.at(f.end, FAULT_END, f)

    def _fault(self, f: Fault, *, start: bool) -> None:
        self.trace.note(self.now, "fault+" if start else "fault-", f.describe())
        if self.l2 is not None:
            self._l2_fault_edge(f, start)
        if start:
            self._active.append(f)
        elif f in self._active:
            self._active.remove(f)
        net = self.net
        if f.kind == "crash":
            sid = f.servers[0]
            if start:
                self.crash_server(sid, mid_step=self.rng.random() < 0.5)
            else:
                node = self.nodes[sid]
                if node.crash_pending and node.engine is not None:
                    self._die(node)
                self.start_server(sid)
        elif f.kind == "pause":
            if start:
                node = self.nodes[f.servers[0]]
                node.paused_until = max(node.paused_until, f.end)
        elif f.kind in ("isolate", "split", "asym", "ring"):
            self._active_cuts(f, start)
            cut: set[tuple[str, str]] = set()
            for g in self._cuts:
                if g.kind == "isolate":
                    s = g.servers[0]
                    cut.update((s, o) for o in self.nodes if o != s)
                    cut.update((o, s) for o in self.nodes if o != s)
                else:
                    cut.update(g.cut)
            net.cut = frozenset(cut)
        elif f.kind == "clientcut":
            self._active_cuts(f, start)
            net.client_cut = frozenset(g.servers[0] for g in self._cuts if g.kind == "clientcut")
        elif f.kind in ("lossy", "dup", "slow"):
            self._active_cuts(f, start)
            levels = [g.level for g in self._cuts if g.kind == f.kind]
            setattr(
                net,
                {"lossy": "drop", "dup": "dup", "slow": "slow"}[f.kind],
                max(levels, default=0.0),
            )
        elif f.kind == "replay" and start:
            n = max(1, int(f.level * (f.end - f.start)))
            for _ in range(min(n, 200)):
                t = f.start + self.rng.random() * (f.end - f.start)
                self.call_at(t, self._replay_one)
        net.update()

    # ------------------------------------------------------------------ L2

    def _l2_fault_edge(self, f: Fault, start: bool) -> None:
        led = self.l2
        assert led is not None
        if not start:
            if f is self._l2_fault:
                self._l2_fault = None
                led.fault_ended(self.now)
                w = led.window
                if w is not None:
                    self.call_at(w.close_at, self._l2_due)
            else:
                led.disturb(self.now, f"end of {f.describe()}")
            return
        servers = frozenset(f.servers)
        if not self._l2_eligible(f, servers):
            self._l2_fault = None
            led.stats.skipped += 1
            led.disturb(self.now, f.describe())
            return
        affected: dict[str, str] = {}
        live: dict[str, str] = {}
        for cl in self.clients.values():
            m = cl.machine
            if m.state is ClientState.HOLDING and m.server and m.holds(cl.local(self.now)):
                (affected if m.server in servers else live)[cl.id] = m.server
        led.open(self.now, f.describe(), servers, affected, live)
        self._l2_fault = f
        w = led.window
        assert w is not None
        self.trace.note(
            self.now,
            "L2",
            f"window: {len(affected)} clients to re-seat by t={w.deadline:.2f}, "
            f"{len(live)} must stay put",
        )
        self.call_at(w.deadline, self._l2_due)

    def _l2_eligible(self, f: Fault, servers: frozenset[str]) -> bool:
        """One fault, on a settled pool, that leaves a majority up and together."""
        led = self.l2
        assert led is not None
        if f.kind not in L2_KINDS or self._active or not led.quiet(self.now):
            return False
        n = len(self.nodes)
        if not servers or 2 * (n - len(servers)) <= n:
            return False
        leaders = [node for node in self.nodes.values() if node.role == "leader"]
        if len(leaders) != 1:
            return False
        lead = leaders[0]
        for node in self.nodes.values():
            if node.engine is None or node.crash_pending or node.paused_until > self.now:
                return False
            if node is lead:
                continue
            if node.role != "follower" or node.term != lead.term:
                return False
            if node.engine.status(node.local(self.now)).get("leader") != lead.id:
                return False
        return True

    def _l2_due(self) -> None:
        if self.l2 is not None:
            self.l2.due(self.now)

    def _active_cuts(self, f: Fault, start: bool) -> None:
        if start:
            self._cuts.append(f)
        elif f in self._cuts:
            self._cuts.remove(f)

    def _replay_one(self) -> None:
        old = self.net.replay()
        if old is None:
            return
        src, dst, msg = old
        self.trace.note(self.now, "replay", f"{src}->{dst} {type(msg).__name__}")
        self.at(self.now + self.net.base_delay, DELIVER_SERVER, dst, src, msg)

    def heal(self) -> None:
        """End every fault now: clean network, every server up and running."""
        self._cuts.clear()
        net = self.net
        net.cut = frozenset()
        net.client_cut = frozenset()
        net.drop = net.dup = net.slow = 0.0
        net.update()
        for node in self.nodes.values():
            node.paused_until = min(node.paused_until, self.now)
            if node.engine is not None and node.crash_pending:
                self._die(node)
            if node.engine is None:
                self.start_server(node.id)
        self.trace.note(self.now, "heal", "all faults healed")

    # ------------------------------------------------------------------ views

    def statuses(self) -> dict[str, ServerStatus | None]:
        out: dict[str, ServerStatus | None] = {}
        for sid, node in self.nodes.items():
            eng = node.engine
            out[sid] = None if eng is None else eng.status(node.local(self.now))
        return out

    def demand(self) -> tuple[dict[str, int], dict[str, int]]:
        """(wanting, holding) seat counts per license, from the clients' side."""
        wanting: dict[str, int] = dict.fromkeys(self.base_limits, 0)
        holding: dict[str, int] = dict.fromkeys(self.base_limits, 0)
        for cl in self.clients.values():
            m = cl.machine
            if m.state is not ClientState.IDLE:
                wanting[m.license] = wanting.get(m.license, 0) + m.count
            if m.holds(cl.local(self.now)):
                holding[m.license] = holding.get(m.license, 0) + m.count
        return wanting, holding

    def leader_status(self) -> Mapping[str, Any] | None:
        for node in self.nodes.values():
            if node.engine is not None and node.role == "leader":
                return node.engine.status(node.local(self.now))
        return None
