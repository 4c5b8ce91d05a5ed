"""Every word the engine emits is one of the shared vocabulary (`lm_core.engine.vocab`).

The patent's example (FIG. 5 -> FIG. 11, plus the refusals, an admin change, a reclaim and
an RLF push) runs through the harness, and a few simulator seeds run with a recording
engine factory; every Event kind, Deny reason and LogUsage kind seen must be a member of
its enum. A word added to the engine without its enum fails here.
"""

from __future__ import annotations

import datetime
import random
from typing import Any

import pytest

from lm_core.engine.effects import Event, LogUsage, Persisted, Reply
from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.messages import (
    ChangeDistribution,
    ClientHeartbeat,
    Deny,
    Message,
    Reclaim,
    Request,
    UpdateRlf,
)
from lm_core.engine.rlf import Rlf, render_rlf, with_distribution
from lm_core.engine.server import LicenseServer
from lm_core.engine.sim.runner import run_seed
from lm_core.engine.vocab import (
    ADMIN_MESSAGES,
    ADMIN_OPS,
    CONFIG_CHANGES,
    AdminOp,
    DenyReason,
    EventKind,
    UsageKind,
)

LIC = "Application 1.0"


class Seen:
    def __init__(self) -> None:
        self.events: set[str] = set()
        self.reasons: set[str] = set()
        self.usage: set[str] = set()

    def add(self, effects: list[Any]) -> None:
        for eff in effects:
            if isinstance(eff, Event):
                self.events.add(eff.kind)
            elif isinstance(eff, LogUsage):
                self.usage.add(eff.kind)
            elif isinstance(eff, Reply) and isinstance(eff.msg, Deny):
                self.reasons.add(eff.msg.reason)

    def check(self) -> None:
        assert self.events - set(EventKind) == set()
        assert self.reasons - set(DenyReason) == set()
        assert self.usage - set(UsageKind) == set()


def req(client: str, rid: int, lic: str = LIC, count: int = 1) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=lic, count=count)


class _Pool(Pool):
    """The harness pool, keeping every reply and every status event it saw."""

    answers: list[Message]
    noted: set[str]

    def ask(self, sid: str, msg: Message, token: str = "conn:1") -> list[Message]:
        out = super().ask(sid, msg, token)
        self.answers.extend(out)
        return out

    def run(self, until: float, step: float = 0.05) -> None:
        super().run(until, step)
        for sid in self.servers:
            self.noted |= {e["kind"] for e in self.status(sid)["events"]}


def _patent_example() -> _Pool:
    """The worked example, with the refusals and admin operations around it."""
    kit = make_kit()
    pool = _Pool(kit.rlf, today=kit.today)
    pool.answers, pool.noted = [], set()
    pool.start("A")  # alone first: no majority
    pool.ask("A", req("early", 1))
    for sid in "BC":
        pool.start(sid)
    pool.run(4.0)
    holders = {"client-A": "A", "client-B": "B", "client-C": "C"}
    for client, sid in holders.items():
        pool.ask(sid, req(client, 1))
    pool.ask("B", req("odd", 1, lic="Nope 1.0"))  # unknown_license
    pool.ask("B", req("odd", 2, count=0))  # bad_request
    pool.ask("C", req("greedy", 1, count=100))  # no_seats
    pool.ask("A", ChangeDistribution(pool="eng", sender="admin", request_id=1, license=LIC,
                                     distribution={"A": 40, "B": 25, "C": 35}))  # fmt: skip
    pool.run(pool.now + 2.0)
    pool.crash("A")  # FIG. 9
    rid = 2
    t = pool.now
    while pool.now < t + 8.0:
        pool.run(pool.now + 1.0)
        for client, sid in holders.items():
            if sid in pool.servers:
                hb = ClientHeartbeat(pool="eng", sender=client, request_id=rid, license=LIC)
                pool.ask(sid, hb, token=f"hb:{client}")
        rid += 1
    hb = ClientHeartbeat(pool="eng", sender="client-A", request_id=rid, license=LIC,
                         failover=True)  # fmt: skip
    pool.ask("B", hb)  # FIG. 10
    pool.ask("C", Reclaim(pool="eng", sender="admin", request_id=2, client_id="client-C",
                          license=LIC, reason="left for the day"))  # fmt: skip
    pool.start("A")  # FIG. 11, restarted from its disk: restart grace
    pool.ask("A", req("late", 1))
    pool.run(pool.now + 12.0)
    newer: Rlf = kit.sign(with_distribution(kit.rlf, LIC, {"A": 30, "B": 30, "C": 30}))
    pool.ask("B", UpdateRlf(pool="eng", sender="admin", request_id=3,
                            rlf_text=render_rlf(newer)))  # fmt: skip
    pool.run(pool.now + 5.0)
    return pool


def test_patent_example_speaks_the_vocabulary() -> None:
    pool = _patent_example()
    seen = Seen()
    seen.add([eff for _, eff in pool.events])
    seen.add([eff for _, eff in pool.usage])
    seen.events |= pool.noted
    seen.reasons |= {msg.reason for msg in pool.answers if isinstance(msg, Deny)}
    seen.check()
    # The run is rich enough to mean something: most words actually occur.
    assert {"start", "role", "election", "sync", "admin", "push", "reclaim"} <= seen.events
    assert {"grant", "deny", "reclaim"} <= seen.usage
    assert {"no_majority", "unknown_license", "bad_request", "no_seats"} <= seen.reasons


class _Recording:
    """A LicenseServer whose every effect is also recorded in `seen`."""

    def __init__(self, server: LicenseServer, seen: Seen) -> None:
        self._server = server
        self._seen = seen

    def handle(self, now: float, sender: str, msg: Message) -> list[Any]:
        out = self._server.handle(now, sender, msg)
        self._seen.add(out)
        return out

    def tick(self, now: float) -> list[Any]:
        out = self._server.tick(now)
        self._seen.add(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulator_seeds_speak_the_vocabulary(seed: int) -> None:
    seen = Seen()

    def factory(
        sid: str, rlf: Rlf, now: float, today: datetime.date, persisted: Persisted | None
    ) -> Any:
        server = LicenseServer(sid, rlf, now=now, today=today, persisted=persisted)
        return _Recording(server, seen)

    r = run_seed(seed, random.Random(seed), duration=300.0, factory=factory,
                 raise_on_failure=False)  # fmt: skip
    assert r.ok, f"{r.invariant}: {r.message}"
    assert seen.events
    assert seen.usage
    seen.check()


def test_a_word_outside_the_vocabulary_is_caught() -> None:
    seen = Seen()
    seen.add([Event("leader_check", "x", {})])
    with pytest.raises(AssertionError):
        seen.check()


def test_admin_ops_are_one_list() -> None:
    assert set(ADMIN_MESSAGES) == set(AdminOp)
    assert set(ADMIN_OPS) == set(ADMIN_MESSAGES.values())
    assert set(CONFIG_CHANGES) == set(ADMIN_OPS) - {Reclaim}
    # StrEnum: the words are still the plain strings on the wire and in JSON.
    assert DenyReason.NO_SEATS == "no_seats"
    assert f"{EventKind.ELECTION}" == "election"
