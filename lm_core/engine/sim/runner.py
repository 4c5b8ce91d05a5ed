"""Randomized runs: one seed -> one pool, one fault schedule, one verdict.

`run_seed(seed, rng)` draws a configuration from ``rng`` (see `random_config`: a *mixed*
pool — 3-11 servers, 10-200 clients, random timing, 1-2 licenses, every fault kind — or,
in about a third of the seeds, a *loaded* one: 50-100 % of the seats held by steady
clients, timing near the RLF defaults, mostly single crashes, pauses and cuts), boots
the pool, lets clients come and go, injects faults and admin operations until
``heal_at``, heals everything, and at ``heal_at + bound`` checks L1 (one leader,
everyone follows, every waiting client served where seats are free), S2 and S6. S1,
one-leader-per-term and S2-on-change run after every step; L2 (`FailoverLedger`) at
every fault of a configuration it applies to (`l2_applies`). An engine that raises or
reports ``Event("bug")`` fails the seed (BUG). Any broken promise raises `SimFailure`
carrying the seed and a short trace.

The caller creates the generator (``random.Random(seed)``): the engine never imports
`random`, and the same seed replays the same run.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field, replace
from typing import Any

from lm_core.engine.codes import issue_code
from lm_core.engine.keys import generate_keypair, load_private
from lm_core.engine.leases import ANSWER_TIMEOUT
from lm_core.engine.messages import (
    AddAllocations,
    AddLicenseCode,
    ChangeDistribution,
    UpdateRlf,
)
from lm_core.engine.rlf import Rlf, Timing, render_rlf, sign_rlf
from lm_core.engine.sim.faults import KINDS, Fault, plan_faults
from lm_core.engine.sim.invariants import (
    FailoverLedger,
    SimFailure,
    Violation,
    check_conservation,
    check_healed,
)
from lm_core.engine.sim.pool import (
    EXPIRES,
    TODAY,
    VENDOR,
    PoolKit,
    admin_key,
    make_pool,
    vendor_key,
)
from lm_core.engine.sim.rng import Rng
from lm_core.engine.sim.trace import Trace
from lm_core.engine.sim.world import AdminOp, ServerFactory, SimClient, World, default_factory

_ROGUE: list[Any] = []


def _rogue_key() -> Any:
    if not _ROGUE:
        _ROGUE.append(load_private(generate_keypair()[0]))
    return _ROGUE[0]


@dataclass
class SimConfig:
    """Everything a run depends on besides the generator's later draws."""

    n_servers: int = 3
    n_clients: int = 20
    licenses: tuple[tuple[str, str, int], ...] = (("Application", "1.0", 15),)
    distribution: dict[str, dict[str, int]] | None = None
    timing: Timing = field(default_factory=Timing)
    majority_rule: bool = True
    duration: float = 1200.0
    faults: bool = True
    fault_kinds: tuple[str, ...] = KINDS
    fault_gap: float = 45.0
    fault_length: float = 20.0
    admin_gap: float = 150.0
    hold_mean: float = 240.0
    idle_mean: float = 120.0
    want_at_start: float = 0.7
    check_every: float = 60.0
    steady: int = 0  # the first `steady` clients hold and heartbeat, rarely releasing
    steady_hold_mean: float = 3000.0
    client_retry: float | None = None  # a client's pause after a walk of refusals (2 x chb)
    loaded: bool = False  # drawn as a loaded configuration (for the description)
    l2: str = "check"  # "check": L2 fails the run; "measure": only counted; "off"
    fault_plan: tuple[Fault, ...] | None = None  # these faults instead of random ones
    fault_quiet: float = 0.0  # > 0: a fault starts at least this long after the last ended

    @property
    def retry(self) -> float:
        t = self.timing
        return self.client_retry if self.client_retry is not None else 2 * t.client_heartbeat

    @property
    def answer_timeout(self) -> float:
        return min(ANSWER_TIMEOUT, self.timing.client_heartbeat / 2)  # what `World.add_client` uses

    @property
    def l2_bound(self) -> float:
        """L2: a faulted server's clients hold a seat again this long after the fault."""
        t = self.timing
        return (2 * t.client_heartbeat + 1.0) * (1 + 2 * t.drift)

    @property
    def l2_settle(self) -> float:
        """L2: how long a pool must be left alone before (and after) a judged fault: an
        election, a restart grace (one client keep-time) and two client heartbeats."""
        t = self.timing
        keep = t.client_lease * (1 + 4 * t.drift) + t.heartbeat_interval
        return (
            2 * t.leader_timeout
            + (self.n_servers + 1) * t.heartbeat_interval
            + keep
            + 2 * t.client_heartbeat
        )

    @property
    def bound(self) -> float:
        """L1: how long after healing the pool has to settle."""
        t = self.timing
        raw = (
            2 * t.leader_timeout
            + 2 * t.heartbeat_interval
            + t.server_lease
            + 2 * t.client_lease
            + 4 * t.client_heartbeat
        )
        return raw * (1 + 4 * t.drift) + 5.0

    @property
    def heal_at(self) -> float:
        return max(self.duration - self.bound, self.duration / 2)

    def describe(self) -> str:
        t = self.timing
        lic = ", ".join(f"{p} {v}: {s}" for p, v, s in self.licenses)
        return (
            f"{self.n_servers} servers, {self.n_clients} clients, {lic}; "
            f"hb {t.heartbeat_interval:.2f}s leader_timeout {t.leader_timeout:.2f}s "
            f"server_lease {t.server_lease:.2f}s client hb {t.client_heartbeat:.1f}s "
            f"client_lease {t.client_lease:.1f}s drift {t.drift:.3f}; "
            f"{self.duration:.0f}s, heal at {self.heal_at:.0f}s"
            + (f"; loaded: {self.steady} steady clients" if self.loaded else "")
            + (f"; L2 n/a: {why}" if (why := l2_applies(self)) else "")
        )


def l2_applies(cfg: SimConfig) -> str:
    """Why L2 cannot be judged on ``cfg`` ("" when it can).

    L2 asks a faulted server's clients to hold a seat again within ``2 x client_heartbeat
    + 1 s``. No engine can do that faster than the pool elects a leader — the best
    survivor (rank 1 at worst: when any other server fails, the leader stays) stands
    ``leader_timeout + 2 x heartbeat`` after the last heartbeat it heard, which is up to
    a heartbeat before the fault, and holds a majority lease a heartbeat later — and the
    client, refused everywhere meanwhile, retries; nor faster than a cut-off server can
    no longer grant (a server lease and a heartbeat) and its client, at its next
    heartbeat, walks and retries. Configurations where either does not fit, or whose
    clients back off longer than half a heartbeat after a walk of refusals, are not
    judged (today's mixed configurations back off 2 x chb). The RLF's default timing
    fits: 2 + 4 x 0.5 + 0.5 = 4.5 s and 1.5 + 0.5 + 2 + 0.5 = 4.5 s, bound 5 s."""
    t = cfg.timing
    if cfg.l2 == "off":
        return "off"
    if not cfg.majority_rule:
        return "majority rule off"
    bound = 2 * t.client_heartbeat + 1.0
    if cfg.retry > t.client_heartbeat / 2:
        return f"clients retry after {cfg.retry:.1f}s > client_heartbeat / 2"
    elect = t.leader_timeout + 4 * t.heartbeat_interval + cfg.retry
    if elect > bound:
        return f"an election and a retry take {elect:.1f}s > {bound:.1f}s"
    cut = t.server_lease + t.heartbeat_interval + t.client_heartbeat + cfg.retry
    if cut > bound:
        return f"a cut-off server's clients walk after {cut:.1f}s > {bound:.1f}s"
    return ""


LOADED_SHARE = 1 / 3  # of random seeds


def random_config(
    rng: Rng,
    *,
    servers: tuple[int, int] = (3, 11),
    clients: tuple[int, int] = (10, 200),
    duration: float = 1200.0,
) -> SimConfig:
    """A configuration drawn from ``rng`` alone (the seed is the whole story): loaded
    (`loaded_config`) with probability `LOADED_SHARE`, else a mixed one."""
    if rng.random() < LOADED_SHARE:
        return loaded_config(rng, servers=servers, clients=clients, duration=duration)
    n_servers = rng.randint(*servers)
    # Log-uniform: every size in the range occurs, small pools more often (cheaper).
    lo, hi = clients
    n_clients = min(hi, max(lo, int(lo * (hi / lo) ** rng.random() + 0.5)))
    n_lic = 1 if rng.random() < 0.7 else 2
    licenses = []
    for k in range(n_lic):
        seats = max(3, rng.randint(n_clients // 3, n_clients + n_clients // 5) // n_lic)
        licenses.append(("Application" if k == 0 else "Designer", f"{k + 1}.0", seats))
    ids = tuple("ABCDEFGHIJK"[:n_servers])
    dist: dict[str, dict[str, int]] | None = None
    if rng.random() < 0.6:
        dist = {}
        for p, v, seats in licenses:
            left = seats
            row = {}
            for sid in ids:
                n = rng.randint(0, max(0, 2 * seats // n_servers))
                n = min(n, left)
                left -= n
                row[sid] = n
            dist[f"{p} {v}"] = row
    # The server's lease formulas need server_lease well above 2 heartbeats (a follower's
    # lease runs from its previous ACK) and leader_timeout above server_lease.
    hb = rng.uniform(1.5, 4.0)
    chb = rng.uniform(10.0, 40.0)
    lease = hb * rng.uniform(3.0, 4.0)
    timing = Timing(
        heartbeat_interval=hb,
        leader_timeout=lease * rng.uniform(1.2, 2.0),
        server_lease=lease,
        client_heartbeat=chb,
        client_lease=chb * rng.uniform(2.5, 4.0),
        drift=rng.uniform(0.0, 0.05),
    )
    return SimConfig(
        n_servers=n_servers,
        n_clients=n_clients,
        licenses=tuple(licenses),
        distribution=dist,
        timing=timing,
        duration=duration,
        fault_gap=rng.uniform(20.0, 90.0),
        fault_length=rng.uniform(5.0, 60.0),
        admin_gap=rng.uniform(60.0, 300.0),
        hold_mean=rng.uniform(60.0, 600.0),
        idle_mean=rng.uniform(30.0, 300.0),
    )


def loaded_config(
    rng: Rng,
    *,
    servers: tuple[int, int] = (3, 11),
    clients: tuple[int, int] = (10, 200),
    duration: float = 1200.0,
) -> SimConfig:
    """A pool in use: 50-100 % of its seats (all of them in 40 % of draws) held by steady
    clients that hold and heartbeat, rarely releasing, plus a few that come and go; one
    license; the RLF's default timing (a quarter of draws; 3 servers, <= 16 clients) or
    timing near it, drawn so that L2 can be judged (`l2_applies`); faults mostly single
    crashes, pauses and cuts, in 80 % of draws far enough apart for the pool to settle
    between them; admin operations rare. Sized to cost about what a mixed seed costs:
    3-5 servers, 10-24 clients (within ``servers`` / ``clients``)."""
    defaults = rng.random() < 0.25  # the RLF's default timing (the issue's figures)
    lo, hi = servers
    n_servers = rng.randint(lo, max(lo, min(hi, 3 if defaults else 5)))
    clo, chi = clients
    n_clients = rng.randint(clo, max(clo, min(chi, 16 if defaults else 24)))
    load = 1.0 if rng.random() < 0.4 else rng.uniform(0.5, 1.0)
    churn = rng.randint(0, n_clients // 4)
    steady = max(1, n_clients - churn)
    seats = max(steady, round(steady / load))
    licenses = (("Application", "1.0", seats),)
    ids = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n_servers])
    dist: dict[str, dict[str, int]] | None = None
    if rng.random() < 0.6:
        left = seats
        row = {}
        for sid in ids:
            n = min(left, rng.randint(0, max(0, 2 * seats // n_servers)))
            left -= n
            row[sid] = n
        dist = {"Application 1.0": row}
    if defaults:
        retry = 0.5  # the client library's
        timing = Timing()
    else:
        retry = rng.uniform(0.5, 1.0)
        hb = rng.uniform(0.75, 1.5)
        lease = hb * rng.uniform(3.0, 4.0)
        leader_timeout = lease * rng.uniform(1.2, 1.6)
        need_elect = (leader_timeout + 4 * hb + retry - 1.0) / 2
        need_cut = lease + hb + retry - 1.0
        chb = max(2.0, 2 * retry, need_elect, need_cut) * rng.uniform(1.0, 1.5)
        timing = Timing(
            heartbeat_interval=hb,
            leader_timeout=leader_timeout,
            server_lease=lease,
            client_heartbeat=chb,
            client_lease=chb * rng.uniform(2.5, 4.0),
            drift=rng.uniform(0.0, 0.05),
        )
    cfg = SimConfig(
        n_servers=n_servers,
        n_clients=steady + churn,
        licenses=licenses,
        distribution=dist,
        timing=timing,
        duration=duration,
        fault_kinds=("crash", "pause", "isolate", "split") if rng.random() < 0.75 else KINDS,
        fault_length=rng.uniform(5.0, 40.0),
        admin_gap=rng.uniform(400.0, 1200.0),
        hold_mean=rng.uniform(60.0, 300.0),
        idle_mean=rng.uniform(30.0, 120.0),
        steady=steady,
        client_retry=retry,
        loaded=True,
    )
    settle = cfg.l2_settle
    cfg.fault_gap = settle * rng.uniform(0.5, 1.5) + cfg.fault_length
    if rng.random() < 0.8:
        cfg.fault_quiet = settle * 1.05
    return cfg


@dataclass
class SeedResult:
    seed: int | None
    config: SimConfig
    ok: bool
    invariant: str = ""
    message: str = ""
    trace: str = ""
    sim_seconds: float = 0.0
    server_steps: int = 0
    client_steps: int = 0
    events: int = 0
    elections: int = 0
    crashes: int = 0
    faults: int = 0
    admin_ok: int = 0
    admin_refused: int = 0
    peak_seats: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    dropped: int = 0
    stale_deadlines: int = 0
    loaded: bool = False
    l2: str = ""  # "" when L2 was judged, else why not
    l2_windows: int = 0
    l2_skipped: int = 0
    l2_voided: int = 0
    l2_affected: int = 0
    l2_reseat: list[float] = field(default_factory=list)  # seconds, per re-seated client
    l2_late: int = 0
    l2_unseated: int = 0
    l2_lapsed_affected: int = 0
    l2_dropped: int = 0
    l2_live: int = 0
    l2_moved: int = 0
    l2_lapsed: int = 0
    l2_bound: float = 0.0


class Admin:
    """The simulated license admin: issues codes, edits and pushes RLFs."""

    def __init__(self, world: World, kit: PoolKit, rng: Rng) -> None:
        self.world = world
        self.kit = kit
        self.rng = rng
        self.next_id = 1
        self.latest: Rlf = kit.signed
        self.extra_codes: list[str] = []
        self.total: dict[str, int] = dict(world.base_limits)
        self.pushed_ok = False
        self.new_products = 0

    def _op(self, kind: str, msg_kind: Any, valid: bool, **kw: Any) -> AdminOp:
        rid = self.next_id
        self.next_id += 1
        sender = "admin"
        extra = {k: kw.pop(k) for k in ("codes", "new_license", "rlf_seq") if k in kw}
        msg = msg_kind(pool=self.latest.pool, sender=sender, request_id=rid, **kw)
        target = self.rng.choice(list(self.world.nodes))
        return AdminOp(msg=msg, target=target, valid=valid, kind=kind, request_id=rid, **extra)

    def random_op(self) -> AdminOp:
        rng = self.rng
        x = rng.random()
        lics = sorted(self.world.base_limits)
        lic = rng.choice(lics)
        ids = list(self.world.nodes)
        if x < 0.3:
            left = self.world.base_limits[lic]
            dist = []
            for sid in ids:
                n = rng.randint(0, max(0, left))
                n = min(n, left // 2 + 1, left)
                left -= n
                dist.append((sid, n))
            return self._op(
                "change_distribution",
                ChangeDistribution,
                True,
                license=lic,
                distribution=tuple(dist),
            )
        if x < 0.38:
            dist = [(ids[0], self.total[lic] + 1)] if rng.random() < 0.5 else [("ZZ", 1)]
            return self._op(
                "change_distribution(bad)",
                ChangeDistribution,
                False,
                license=lic,
                distribution=tuple(dist),
            )
        if x < 0.58:
            product, version = lic.rsplit(" ", 1)
            seats = rng.randint(1, 10)
            code = self.kit.code(product, version, seats, kind="add")
            self.extra_codes.append(code.text())
            self.total[lic] += seats
            return self._op(
                "add_allocations",
                AddAllocations,
                True,
                code=code.text(),
                codes=((code.serial, lic, seats),),
            )
        if x < 0.66:
            self.new_products += 1
            product = f"Tool{self.new_products}"
            seats = rng.randint(1, 20)
            code = self.kit.code(product, "1.0", seats)
            self.extra_codes.append(code.text())
            new_lic = f"{product} 1.0"
            return self._op(
                "add_license_code",
                AddLicenseCode,
                True,
                code=code.text(),
                codes=((code.serial, new_lic, seats),),
                new_license=new_lic,
            )
        if x < 0.74:
            product, version = lic.rsplit(" ", 1)
            if rng.random() < 0.5:
                code = issue_code(
                    _rogue_key(),
                    vendor=VENDOR,
                    product=product,
                    version=version,
                    seats=50,
                    expires=EXPIRES,
                    issued=TODAY,
                    serial="ROGUE",
                    kind="add",
                )
                kind = "add_allocations(bad signature)"
            else:
                code = issue_code(
                    vendor_key(),
                    vendor=VENDOR,
                    product=product,
                    version=version,
                    seats=50,
                    expires=datetime.date(2021, 1, 1),
                    issued=datetime.date(2020, 1, 1),
                    serial="OLD",
                    kind="add",
                )
                kind = "add_allocations(expired)"
            return self._op(kind, AddAllocations, False, code=code.text())
        if x < 0.94 or not self.pushed_ok:
            codes = tuple(dict.fromkeys(self.latest.codes + tuple(self.extra_codes)))
            rlf = replace(
                self.latest, sequence=self.latest.sequence + 1, codes=codes, signature=None
            )
            rlf = sign_rlf(rlf, admin_key())
            self.latest = rlf
            new = tuple((c.serial, c.license, c.seats) for c in rlf.license_codes())
            return self._op(
                "update_rlf",
                UpdateRlf,
                True,
                rlf_text=render_rlf(rlf),
                codes=new,
                rlf_seq=rlf.sequence,
            )
        return self._op("update_rlf(stale)", UpdateRlf, False, rlf_text=render_rlf(self.kit.signed))

    def on_reply(self, op: AdminOp, ok: bool) -> None:
        if op.kind == "update_rlf" and ok:
            self.pushed_ok = True


def build_world(
    cfg: SimConfig,
    rng: Rng,
    *,
    factory: ServerFactory = default_factory,
    trace: Trace | None = None,
) -> tuple[World, PoolKit]:
    kit = make_pool(
        cfg.n_servers,
        cfg.licenses,
        distribution=cfg.distribution,
        timing=cfg.timing,
        majority_rule=cfg.majority_rule,
    )
    world = World(kit.signed, rng, today=TODAY, factory=factory, trace=trace)
    return world, kit


def run_config(
    cfg: SimConfig,
    rng: Rng,
    *,
    seed: int | None = None,
    factory: ServerFactory = default_factory,
    trace: Trace | None = None,
    raise_on_failure: bool = True,
) -> SeedResult:
    """Run one configuration to the end; see the module docstring."""
    world, kit = build_world(cfg, rng, factory=factory, trace=trace)
    result = SeedResult(seed=seed, config=cfg, ok=True)
    result.l2 = l2_applies(cfg)
    if not result.l2:
        world.l2 = FailoverLedger(
            bound=cfg.l2_bound, settle=cfg.l2_settle, enforce=cfg.l2 == "check"
        )
    heal_at = cfg.heal_at
    end = heal_at + cfg.bound
    try:
        _populate(world, kit, cfg, rng, heal_at)
        t = 0.0
        while t < end:
            step = min(cfg.check_every, end - t)
            world.run(t + step)
            t += step
            _periodic_checks(world)
        if world.l2 is not None:
            world.l2.due(world.now)
        _final_checks(world)
    except Violation as v:
        result.ok = False
        result.invariant = v.invariant
        result.message = v.message
        result.trace = world.trace.render()
        _fill(result, world, cfg)
        if raise_on_failure:
            raise SimFailure(seed, v, result.trace) from v
        return result
    _fill(result, world, cfg)
    return result


def _fill(result: SeedResult, world: World, cfg: SimConfig) -> None:
    s = world.stats
    result.sim_seconds = world.now
    result.server_steps = s.server_steps
    result.client_steps = s.client_steps
    result.events = s.events
    result.elections = s.elections
    result.crashes = s.crashes
    result.admin_ok = s.admin_ok
    result.admin_refused = s.admin_refused
    result.peak_seats = dict(world.seats.peak)
    result.messages = world.net.sent
    result.dropped = world.net.dropped
    result.stale_deadlines = s.stale_deadlines
    result.loaded = cfg.loaded
    result.l2_bound = cfg.l2_bound
    if world.l2 is not None:
        x = world.l2.stats
        result.l2_windows = x.windows
        result.l2_skipped = x.skipped
        result.l2_voided = x.voided
        result.l2_affected = x.affected
        result.l2_reseat = list(x.reseat)
        result.l2_late = x.late
        result.l2_unseated = x.unseated
        result.l2_lapsed_affected = x.lapsed_affected
        result.l2_dropped = x.dropped
        result.l2_live = x.live
        result.l2_moved = x.moved
        result.l2_lapsed = x.lapsed


def _populate(world: World, kit: PoolKit, cfg: SimConfig, rng: Rng, heal_at: float) -> None:
    ids = list(world.nodes)
    # Start-up: servers boot within a few heartbeats of each other.
    for sid in ids:
        world.call_at(
            rng.uniform(0.0, 3 * cfg.timing.heartbeat_interval),
            functools.partial(world.start_server, sid),
        )
    lics = sorted(world.base_limits)
    steady: set[str] = set()
    for k in range(cfg.n_clients):
        cl = world.add_client(
            f"c{k}", lics[k % len(lics)], home=rng.choice(ids), retry_backoff=cfg.client_retry
        )
        if k < cfg.steady:
            steady.add(cl.id)
            world.want(cl.id, rng.uniform(1.0, 10.0))
        elif rng.random() < cfg.want_at_start:
            world.want(cl.id, rng.uniform(1.0, 30.0))
        else:
            world.want(cl.id, rng.expovariate(1.0 / cfg.idle_mean) + 1.0)

    def toggle(cl: SimClient) -> float | None:
        wants = cl.machine.wants
        hold = cfg.steady_hold_mean if cl.id in steady else cfg.hold_mean
        nxt = rng.expovariate(1.0 / (hold if wants else cfg.idle_mean))
        if world.now + nxt >= heal_at:
            return None
        return nxt

    world.toggle = toggle
    if cfg.faults:
        lease = cfg.timing.server_lease + cfg.timing.client_lease
        plan = cfg.fault_plan
        if plan is None:
            plan = tuple(
                plan_faults(
                    rng,
                    tuple(ids),
                    start=20.0,
                    heal_at=heal_at,
                    mean_gap=cfg.fault_gap,
                    mean_length=cfg.fault_length,
                    lease=lease,
                    kinds=cfg.fault_kinds,
                    quiet=cfg.fault_quiet,
                )
            )
        for f in plan:
            world.schedule_fault(f)
        admin = Admin(world, kit, rng)
        world.on_admin_reply = lambda op, msg: admin.on_reply(op, msg.ok)
        t = 30.0 + rng.expovariate(1.0 / cfg.admin_gap)
        while t < heal_at - 5.0:
            world.call_at(t, lambda: _admin_now(world, admin))
            t += rng.expovariate(1.0 / cfg.admin_gap)
    world.call_at(heal_at, world.heal)


def _admin_now(world: World, admin: Admin) -> None:
    op = admin.random_op()
    world.admin_send(op, f"admin:{op.request_id}")


def _periodic_checks(world: World) -> None:
    st = world.leader_status()
    if st is not None:
        check_conservation(world.now, st)


def _final_checks(world: World) -> None:
    statuses = world.statuses()
    wanting, holding = world.demand()
    lead = check_healed(world.now, statuses, wanting, holding)
    leader = statuses[lead]
    assert leader is not None
    check_conservation(world.now, leader)
    world.admin.check(world.now, leader, world.base_limits)
    world.trace.note(world.now, "healed", f"L1/S2/S6 hold; leader {lead}")


def run_seed(
    seed: int,
    rng: Rng,
    *,
    servers: tuple[int, int] = (3, 11),
    clients: tuple[int, int] = (10, 200),
    duration: float = 1200.0,
    factory: ServerFactory = default_factory,
    trace: Trace | None = None,
    raise_on_failure: bool = True,
    l2: str = "check",
) -> SeedResult:
    """One randomized run; ``rng`` must be freshly seeded with ``seed``. ``l2``: "check"
    (an L2 breach fails the run), "measure" (only counted) or "off"."""
    if l2 not in ("check", "measure", "off"):
        raise ValueError(f"l2: expected check, measure or off, got {l2!r}")
    cfg = random_config(rng, servers=servers, clients=clients, duration=duration)
    cfg.l2 = l2
    return run_config(
        cfg, rng, seed=seed, factory=factory, trace=trace, raise_on_failure=raise_on_failure
    )
