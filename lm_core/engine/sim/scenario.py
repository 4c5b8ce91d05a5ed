"""Scripted scenarios: a tiny, readable text format driving the simulated world.

One step per line, ``at SECONDS VERB ARGS...`` (true time, ascending); ``#`` starts a
comment; arguments are split like a shell (quotes group words). The header line
``pool`` sets the pool up before anything runs::

    pool servers=A,B,C license="Application 1.0" seats=100 dist=A:40,B:30,C:30 \
         client_heartbeat=10 client_lease=30
    at 0    start A
    at 1    start B C
    at 3    acquire cB B              # client cB, home server B, asks for one seat
    at 4    expect table A "Application 1.0" pool=99 free=0 A=40/0/40 B=30/1/29 C=30/0/30
    at 4    expect table B "Application 1.0" pool=- free=- A=- B=30/1/29 C=-
    at 9    crash A
    at 15   expect role B leader
    at 20   expect holds cA B

Verbs: ``start S...``, ``crash S...``, ``restart S...``, ``acquire CLIENT HOME [LICENSE]``,
``release CLIENT``, ``cut S...`` (isolate those servers from the others), ``heal``,
``expect table SERVER LICENSE pool=N free=N ID=distribution/in_use/available ...``
(``-`` = the "don't care" cell a follower shows: None), ``expect role SERVER ROLE``,
``expect leader SERVER`` (every live server agrees), ``expect holds CLIENT SERVER``,
``expect idle CLIENT`` (holds nothing). A failed expectation raises `ScenarioError`
naming the line.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lm_core.engine.rlf import Timing
from lm_core.engine.sim.pool import TODAY, make_pool
from lm_core.engine.sim.rng import Rng
from lm_core.engine.sim.trace import Trace
from lm_core.engine.sim.world import ServerFactory, World, default_factory
from lm_core.engine.status_types import LicenseStatus

_TIMING = ("heartbeat_interval", "leader_timeout", "server_lease", "client_heartbeat",
           "client_lease", "drift")  # fmt: skip


class ScenarioError(AssertionError):
    """A scenario line failed (or could not be read)."""

    def __init__(self, line: int, text: str, message: str) -> None:
        super().__init__(f"scenario line {line}: {text.strip()}\n  {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Step:
    line: int
    text: str
    t: float
    verb: str
    args: tuple[str, ...]


@dataclass
class Script:
    header: dict[str, str]
    steps: list[Step]


def parse(text: str) -> Script:
    header: dict[str, str] = {}
    steps: list[Step] = []
    last = 0.0
    lines = text.replace("\\\n", " ").splitlines()
    for n, raw in enumerate(lines, start=1):
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as e:
            raise ScenarioError(n, raw, str(e)) from None
        if not words:
            continue
        if words[0] == "pool":
            for w in words[1:]:
                k, sep, v = w.partition("=")
                if not sep:
                    raise ScenarioError(n, raw, f"expected key=value, got {w!r}")
                header[k] = v
            continue
        if words[0] != "at" or len(words) < 3:
            raise ScenarioError(n, raw, "expected `at SECONDS VERB ARGS...`")
        try:
            t = float(words[1])
        except ValueError:
            raise ScenarioError(n, raw, f"bad time {words[1]!r}") from None
        if t < last:
            raise ScenarioError(n, raw, f"time {t} goes back (previous {last})")
        last = t
        steps.append(Step(n, raw, t, words[2], tuple(words[3:])))
    return Script(header, steps)


def _cell(text: str) -> tuple[int, int, int] | None:
    if text == "-":
        return None
    d, u, a = (int(x) for x in text.split("/"))
    return (d, u, a)


def _int_or_none(text: str) -> int | None:
    return None if text == "-" else int(text)


class Scenario:
    """Run a `Script` against a quiet world (no faults, tiny network delays)."""

    def __init__(
        self,
        text: str,
        rng: Rng,
        *,
        factory: ServerFactory = default_factory,
        trace: Trace | None = None,
    ) -> None:
        self.script = parse(text)
        h = self.script.header
        ids = h.get("servers", "A,B,C").split(",")
        lic = h.get("license", "Application 1.0")
        product, version = lic.rsplit(" ", 1)
        seats = int(h.get("seats", "100"))
        dist = None
        if "dist" in h:
            dist = {lic: {k: int(v) for k, v in (x.split(":") for x in h["dist"].split(","))}}
        timing = Timing(**{k: float(h[k]) for k in _TIMING if k in h})
        kit = make_pool(
            len(ids),
            ((product, version, seats),),
            distribution=dist,
            timing=timing,
            majority_rule=h.get("majority_rule", "true") == "true",
        )
        self.license = lic
        self.world = World(
            kit.signed,
            rng,
            today=TODAY,
            factory=factory,
            trace=trace or Trace(steps=80, notes=400),
            client_drift=False,
        )
        self.checked: list[str] = []

    def run(self) -> World:
        w = self.world
        for step in self.script.steps:
            w.run(step.t)
            try:
                self._do(step)
            except ScenarioError:
                raise
            except (AssertionError, KeyError, ValueError) as e:
                raise ScenarioError(step.line, step.text, f"{e}\n{w.trace.render()}") from e
        return w

    def _do(self, s: Step) -> None:
        w = self.world
        a = s.args

        def each(fn: Callable[[str], None]) -> Callable[[], None]:
            def run() -> None:
                for x in a:
                    fn(x)

            return run

        verbs: dict[str, Callable[[], None]] = {
            "start": each(w.start_server),
            "restart": each(w.start_server),
            "crash": each(w.crash_server),
            "acquire": lambda: self._acquire(a),
            "release": lambda: self._release(a[0]),
            "cut": lambda: self._cut(a),
            "heal": w.heal,
            "expect": lambda: self._expect(s),
        }
        if s.verb not in verbs:
            raise ScenarioError(s.line, s.text, f"unknown verb {s.verb!r}")
        verbs[s.verb]()

    def _acquire(self, a: tuple[str, ...]) -> None:
        w = self.world
        cid, home = a[0], a[1]
        lic = a[2] if len(a) > 2 else self.license
        if cid not in w.clients:
            w.add_client(cid, lic, home=home)
        w.want(cid, w.now)
        w.run(w.now)

    def _release(self, cid: str) -> None:
        w = self.world
        w.want(cid, w.now)
        w.run(w.now)

    def _cut(self, servers: tuple[str, ...]) -> None:
        w = self.world
        cut = {(x, o) for x in servers for o in w.nodes if o not in servers}
        cut |= {(o, x) for x, o in cut}
        w.net.cut = frozenset(cut)
        w.net.update()

    def _expect(self, s: Step) -> None:
        w = self.world
        kind, *rest = s.args
        fail: Callable[[str], ScenarioError] = lambda m: ScenarioError(  # noqa: E731
            s.line, s.text, m + "\n" + w.trace.render(notes=30, steps=30)
        )
        if kind == "role":
            sid, role = rest
            node = w.nodes[sid]
            got = "down" if node.engine is None else w.statuses()[sid]["role"]  # type: ignore[index]
            if got != role:
                raise fail(f"{sid} is {got}, expected {role}")
        elif kind == "leader":
            (lead,) = rest
            for sid, st in w.statuses().items():
                if st is not None and st.get("leader") != lead:
                    raise fail(f"{sid} says the leader is {st.get('leader')}, expected {lead}")
        elif kind == "holds":
            cid, server = rest
            cl = w.clients[cid]
            m = cl.machine
            if not m.holds(cl.local(w.now)) or m.server != server:
                raise fail(
                    f"{cid} holds={m.holds(cl.local(w.now))} from {m.server} "
                    f"(state {m.state.value}), expected to hold from {server}"
                )
        elif kind == "idle":
            (cid,) = rest
            cl = w.clients[cid]
            if cl.machine.holds(cl.local(w.now)):
                raise fail(f"{cid} still holds from {cl.machine.server}")
        elif kind == "table":
            self._expect_table(rest, fail)
        else:
            raise fail(f"unknown expectation {kind!r}")
        self.checked.append(s.text.strip())

    def _expect_table(self, rest: list[str], fail: Callable[[str], ScenarioError]) -> None:
        w = self.world
        sid, lic, *cells = rest
        st = w.statuses()[sid]
        if st is None:
            raise fail(f"{sid} is down")
        rows = {x["license"]: x for x in st["licenses"]}
        if lic not in rows:
            raise fail(f"{sid} has no license {lic!r} (has {sorted(rows)})")
        row: LicenseStatus = rows[lic]
        problems = []
        for c in cells:
            k, _, v = c.partition("=")
            if k == "pool":
                want: Any = _int_or_none(v)
                got: Any = row.get("pool_available")
            elif k == "free":
                want, got = _int_or_none(v), row.get("free_pool")
            elif k == "limit":
                want, got = int(v), row.get("hard_limit")
            else:
                want = _cell(v)
                r = row["servers"].get(k)
                got = None if r is None else (r["distribution"], r["in_use"], r["available"])
            if want != got:
                problems.append(f"{k}: expected {v}, got {_show(got)}")
        if problems:
            raise fail(f"{sid} table for {lic}: " + "; ".join(problems))


def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return "/".join(str(x) for x in v)
    return str(v)


def run_script(text: str, rng: Rng, *, factory: ServerFactory = default_factory) -> Scenario:
    sc = Scenario(text, rng, factory=factory)
    sc.run()
    return sc
