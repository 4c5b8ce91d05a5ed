"""The invariant checkers can fail: broken servers and broken tables are caught.

Each test breaks one rule on purpose and asserts that the simulator raises the
matching `Violation` (a checker that never fires would prove nothing).
"""

from __future__ import annotations

import random
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from lm_core.engine import claims
from lm_core.engine.claims import TEST_CLAIM_KEY
from lm_core.engine.effects import Persisted, Reply
from lm_core.engine.harness import make_kit
from lm_core.engine.messages import Authorize, ClientHeartbeat, Deny, Request
from lm_core.engine.rlf import Rlf, Timing
from lm_core.engine.server import LicenseServer
from lm_core.engine.sim.faults import Fault
from lm_core.engine.sim.invariants import (
    AdminLedger,
    FailoverLedger,
    LeaderTerms,
    SeatLedger,
    SimFailure,
    Violation,
    check_conservation,
    check_healed,
)
from lm_core.engine.sim.runner import SimConfig, l2_applies, run_config, run_seed
from lm_core.engine.sim.scenario import run_script

sys.path.insert(0, str(Path(__file__).parent))
from toyserver import (
    bug_reporting_factory,
    careless_factory,
    raising_factory,
    toy_factory,
)


class GreedyServer(LicenseServer):
    """Issues whenever it would have said no: ignores seats and majority alike."""

    def _greedy(self, effects: list[Any]) -> list[Any]:
        out = []
        for e in effects:
            if isinstance(e, Reply) and isinstance(e.msg, Deny):
                d = e.msg
                t = self.rlf.timing
                e = Reply(
                    e.to,
                    Authorize(
                        pool=d.pool,
                        sender=self.id,
                        term=self.term,
                        request_id=d.request_id,
                        license=d.license,
                        count=1,
                        lease=t.client_lease,
                        heartbeat_interval=t.client_heartbeat,
                    ),
                )
            out.append(e)
        return out

    def handle(self, now: float, sender: str, msg: Any) -> list[Any]:
        return self._greedy(super().handle(now, sender, msg))


def greedy_factory(
    sid: str, rlf: Rlf, now: float, today: date, p: Persisted | None
) -> LicenseServer:
    return GreedyServer(sid, rlf, now=now, today=today, persisted=p)


OVERSUBSCRIBED = """
pool servers=A,B,C seats=2 dist=A:1,B:1,C:0
at 0   start A B C
at 8   acquire c1 A
at 8   acquire c2 B
at 9   acquire c3 C
at 12  expect idle c3
"""


def test_s1_catches_a_server_that_issues_without_seats() -> None:
    # The honest server passes the same script ...
    run_script(OVERSUBSCRIBED, random.Random(1))
    # ... the greedy one over-issues and S1 fires at the third grant.
    with pytest.raises(Violation) as err:
        run_script(OVERSUBSCRIBED, random.Random(1), factory=greedy_factory)
    assert err.value.invariant == "S1"
    assert "hard limit 2" in err.value.message


PARTITIONED_LEADER = """
pool servers=A,B,C seats=4 dist=A:2,B:1,C:1
at 0   start A
at 3   start B C
at 8   acquire a1 A
at 8   acquire a2 A
at 10  cut A
at 45  acquire b1 B
at 46  acquire b2 B
at 47  acquire b3 C
at 48  acquire b4 C
at 70  expect role B leader
"""


def test_s1_catches_a_leader_that_serves_without_a_majority_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_script(PARTITIONED_LEADER, random.Random(2))  # the real rule holds
    # Skip the majority-lease check: the cut-off leader keeps renewing its clients while
    # the majority fences it and hands its seats out again.
    monkeypatch.setattr(LicenseServer, "_serving_lease", lambda self, now: True)
    with pytest.raises(Violation) as err:
        run_script(PARTITIONED_LEADER, random.Random(2))
    assert err.value.invariant == "S1"


CRASHY = """
pool servers=A,B,C seats=2 client_heartbeat=2 client_lease=20
at 0   start A B C
at 1   acquire c1 A
at 1   acquire c2 A
at 3   crash A
at 3.5 restart A
at 4   acquire c3 A
at 6   expect holds c1 A
"""


def test_s1_catches_a_server_that_forgets_its_key_table_on_restart() -> None:
    run_script(CRASHY, random.Random(3), factory=toy_factory)
    with pytest.raises(Violation) as err:
        run_script(CRASHY, random.Random(3), factory=careless_factory)
    assert err.value.invariant == "S1"


def test_seat_ledger_counts_expiry_and_release() -> None:
    led = SeatLedger({"L": 2})
    led.update(0.0, "a", "L", 1, 10.0)
    led.update(1.0, "b", "L", 1, 5.0)
    with pytest.raises(Violation):
        led.update(2.0, "c", "L", 1, 8.0)
    led = SeatLedger({"L": 2})
    led.update(0.0, "a", "L", 1, 10.0)
    led.update(1.0, "b", "L", 1, 5.0)
    led.update(5.0, "c", "L", 1, 8.0)  # b's lease ran out at 5.0: fine
    led.update(6.0, "a", "L", 1, None)  # a released
    led.update(6.5, "d", "L", 1, 9.0)
    assert led.holders("L") == 2
    with pytest.raises(Violation):
        led.update(7.0, "e", "L", 1, 9.0)
    led.raise_limit("L", 1)  # an add-on code arrived
    led.update(7.0, "e", "L", 1, 9.0)


def test_one_leader_per_term() -> None:
    terms = LeaderTerms()
    terms.saw(1.0, "A", 1)
    terms.saw(2.0, "A", 1)
    terms.saw(3.0, "B", 2)
    with pytest.raises(Violation, match="two leaders in term 2"):
        terms.saw(4.0, "C", 2)


def _status(rows: dict[str, tuple[int, int]], free: int, limit: int, **kw: Any) -> dict[str, Any]:
    return {
        "id": "A", "role": "leader", "term": 3, "leader": "A", "rlf_seq": 2,
        "config_version": 5,
        "licenses": [{"license": "L", "hard_limit": limit, "free_pool": free,
                      "servers": {k: {"distribution": d, "in_use": u, "available": d - u}
                                  for k, (d, u) in rows.items()}}],
        **kw,
    }  # fmt: skip


def test_conservation_s2() -> None:
    check_conservation(0.0, _status({"A": (40, 1), "B": (30, 0), "C": (29, 0)}, 1, 100))
    with pytest.raises(Violation, match="S2"):
        check_conservation(0.0, _status({"A": (40, 1), "B": (31, 0), "C": (29, 0)}, 1, 100))


def test_admin_ledger_s6() -> None:
    led = AdminLedger(rlf_seq=2, config_version=5, seats={"L": 10})
    led.check(0.0, _status({"A": (110, 0)}, 0, 110), {"L": 100})
    with pytest.raises(Violation, match="S6"):
        led.check(0.0, _status({"A": (100, 0)}, 0, 100), {"L": 100})
    led.rlf_seq = 3
    with pytest.raises(Violation, match="RLF sequence"):
        led.check(0.0, _status({"A": (110, 0)}, 0, 110), {"L": 100})


def test_healed_l1() -> None:
    lead = _status({"A": (2, 2)}, 0, 2)
    fol = {**lead, "id": "B", "role": "follower"}
    assert check_healed(0.0, {"A": lead, "B": fol}, {"L": 3}, {"L": 2}) == "A"
    with pytest.raises(Violation, match="exactly one leader"):
        check_healed(0.0, {"A": lead, "B": {**lead, "id": "B"}}, {"L": 1}, {"L": 1})
    with pytest.raises(Violation, match="not a follower"):
        check_healed(0.0, {"A": lead, "B": {**fol, "leader": "C"}}, {"L": 1}, {"L": 1})
    with pytest.raises(Violation, match="hold one"):
        check_healed(0.0, {"A": lead, "B": fol}, {"L": 3}, {"L": 1})


# ---------------------------------------------------------------- L2, BUG, renew window


class SeatKeepingServer(LicenseServer):
    """A server that never lets a seat move with its client (FIG. 10 undone): as leader
    it refuses every claim a fail-over heartbeat presents."""

    def _claim(self, *args: Any, **kwargs: Any) -> str:
        return "this server never moves seats"


def seat_keeping_factory(
    sid: str, rlf: Rlf, now: float, today: date, p: Persisted | None
) -> LicenseServer:
    return SeatKeepingServer(
        sid, rlf, now=now, today=today, persisted=p, claim_key=TEST_CLAIM_KEY
    )


def loaded_leader_kill(seats: int = 12) -> SimConfig:
    """A full pool (every seat held by a steady client, A:4 B:4 C:4), nothing else going
    on; the leader A is killed at t=60 and comes back 100 s later."""
    timing = Timing(
        heartbeat_interval=0.5,
        leader_timeout=2.5,
        server_lease=1.75,
        client_heartbeat=5.0,
        client_lease=15.0,
        drift=0.01,
    )
    cfg = SimConfig(
        n_servers=3,
        n_clients=seats,
        licenses=(("Application", "1.0", seats),),
        distribution={"Application 1.0": {"A": seats // 3, "B": seats // 3, "C": seats // 3}},
        timing=timing,
        duration=300.0,
        admin_gap=1e12,
        steady=seats,
        steady_hold_mean=1e12,
        client_retry=0.5,
        loaded=True,
        fault_plan=(Fault(60.0, 160.0, "crash", ("A",)),),
    )
    assert l2_applies(cfg) == ""
    return cfg


def test_l2_catches_a_server_that_never_moves_seats_with_their_clients() -> None:
    cfg = loaded_leader_kill()
    with pytest.raises(SimFailure) as err:
        run_config(cfg, random.Random(11), seed=11, factory=seat_keeping_factory)
    v = err.value.violation
    assert v.invariant == "L2", err.value
    assert "crash A" in v.message
    assert 60.0 < v.t <= 60.0 + cfg.l2_bound + 1e-6  # judged at the deadline, not later
    assert str(err.value).startswith("seed 11: L2")


def test_l2_ledger_judges_reseat_moves_and_lapses() -> None:
    led = FailoverLedger(bound=10.0, settle=30.0)
    assert not led.quiet(5.0)
    assert led.quiet(30.0)
    led.open(30.0, "crash A", frozenset({"A"}), {"a1": "A", "a2": "A"}, {"b1": "B"})
    led.authorized(31.0, "a1", "A")  # renewed by the faulted A: provisionally, after 1 s
    led.authorized(33.0, "a1", "B")  # ... and now on a healthy server
    led.released("a2")  # let go: leaves the window
    led.lost(34.0, "a2", "lease expired")
    led.authorized(35.0, "b1", "B")  # renewed where it was: fine
    led.due(40.0)
    assert led.stats.reseat == [1.0]
    assert led.stats.late == 0
    with pytest.raises(Violation, match="moved to C"):
        led.authorized(41.0, "b1", "C")
    # a late client fails at the deadline; a lapse of a live client fails at once
    led = FailoverLedger(bound=10.0, settle=30.0)
    led.open(30.0, "pause B", frozenset({"B"}), {"b1": "B"}, {"a1": "A"})
    with pytest.raises(Violation, match="not holding a seat again"):
        led.due(40.0)
    led = FailoverLedger(bound=10.0, settle=30.0)
    led.open(30.0, "isolate B", frozenset({"B"}), {}, {"a1": "A"})
    with pytest.raises(Violation, match="lost its lease"):
        led.lost(32.0, "a1", "lease expired")
    # renewed by the cut-off server, then left to lapse: L2 fails
    led = FailoverLedger(bound=10.0, settle=30.0)
    led.open(30.0, "isolate C", frozenset({"C"}), {"c1": "C"}, {})
    led.authorized(31.0, "c1", "C")
    led.due(40.0)
    with pytest.raises(Violation, match="renewed by C during isolate C, then lost its lease"):
        led.lost(45.0, "c1", "lease expired")
    # a second fault cuts the window short: nothing undecided is judged
    led = FailoverLedger(bound=10.0, settle=30.0)
    led.open(30.0, "crash A", frozenset({"A"}), {"a1": "A"}, {})
    led.disturb(35.0, "lossy")
    led.due(50.0)
    assert led.stats.voided == 1
    assert led.stats.late == 0
    # measuring only: counted, never raised; the fault's end starts the settle period
    led = FailoverLedger(bound=10.0, settle=30.0, enforce=False)
    led.open(30.0, "crash A", frozenset({"A"}), {"a1": "A"}, {"b1": "B"})
    led.fault_ended(32.0)
    led.authorized(33.0, "a1", "A")  # A is back: its renewal counts
    led.due(50.0)
    led.lost(55.0, "b1", "lease expired")
    led.due(62.0)
    assert led.window is None
    assert (led.stats.reseat, led.stats.lapsed) == ([3.0], 1)


def test_a_raising_engine_fails_the_seed() -> None:
    with pytest.raises(SimFailure) as err:
        run_seed(
            5,
            random.Random(5),
            servers=(3, 3),
            clients=(10, 10),
            duration=300.0,
            factory=raising_factory,
            l2="off",
        )
    assert err.value.seed == 5
    assert err.value.violation.invariant == "BUG"
    assert "toy engine bug" in err.value.violation.message
    assert str(err.value).startswith("seed 5: BUG")


def test_an_engine_reporting_a_bug_event_fails_the_seed() -> None:
    with pytest.raises(SimFailure) as err:
        run_seed(
            6,
            random.Random(6),
            servers=(3, 3),
            clients=(10, 10),
            duration=600.0,
            factory=bug_reporting_factory,
            l2="off",
        )
    assert err.value.seed == 6
    assert err.value.violation.invariant == "BUG"
    assert "Release from" in err.value.violation.message


def _raise(*args: Any) -> None:
    raise KeyError("broken handler")


def test_a_raising_handler_fails_the_sim_and_the_harness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Today the engine turns the exception into Event("bug"); once it lets exceptions
    # through, the simulator and the harness catch them: either way it is a BUG.
    monkeypatch.setattr(LicenseServer, "_dispatch", _raise)
    with pytest.raises(SimFailure) as err:
        run_seed(3, random.Random(3), servers=(3, 3), clients=(10, 10), duration=120.0)
    assert err.value.violation.invariant == "BUG"
    assert "broken handler" in err.value.violation.message
    kit = make_kit()
    pool = kit.pool()
    pool.start("A")
    with pytest.raises(Violation) as v:
        pool.ask("A", Request(pool=kit.rlf.pool, sender="c1", request_id=1,
                              license="Application 1.0", count=1))  # fmt: skip
    assert v.value.invariant == "BUG"


class RenewingServer(LicenseServer):
    """Keeps renewing the clients it authorized whatever its lease says: every refusal
    of such a client's (non-fail-over) heartbeat becomes an Authorize. A renew window
    with no end: the majority fences this server and hands its seats out again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.served: set[str] = set()

    def handle(self, now: float, sender: str, msg: Any) -> list[Any]:
        out = super().handle(now, sender, msg)
        renewal = isinstance(msg, ClientHeartbeat) and not msg.failover
        t = self.rlf.timing
        for k, e in enumerate(out):
            if not isinstance(e, Reply):
                continue
            if isinstance(e.msg, Authorize):
                self.served.add(e.to)
            elif isinstance(e.msg, Deny) and renewal and e.to in self.served:
                out[k] = Reply(
                    e.to,
                    Authorize(
                        pool=e.msg.pool,
                        sender=self.id,
                        term=self.term,
                        request_id=e.msg.request_id,
                        license=e.msg.license,
                        count=1,
                        lease=t.client_lease,
                        heartbeat_interval=t.client_heartbeat,
                    ),
                )
        return out


def renewing_factory(
    sid: str, rlf: Rlf, now: float, today: date, p: Persisted | None
) -> LicenseServer:
    return RenewingServer(sid, rlf, now=now, today=today, persisted=p)


CUT_FOLLOWER = """
pool servers=A,B,C seats=3 dist=A:1,B:1,C:1
at 0   start A B C
at 5   acquire a1 A
at 5   acquire b1 B
at 5   acquire c1 C
at 10  cut C
at 40  acquire d1 A
at 60  expect idle d1
"""


def test_s1_catches_a_server_that_renews_past_a_possible_fence() -> None:
    run_script(CUT_FOLLOWER, random.Random(4))  # the real rule holds
    with pytest.raises(Violation) as err:
        run_script(CUT_FOLLOWER, random.Random(4), factory=renewing_factory)
    assert err.value.invariant == "S1"


class PushForgetsClaimsServer(LicenseServer):
    """Drops the honoured claims when a new RLF is pushed, so a returning server's report
    is no longer discounted by the seats its clients carried away."""

    def _adopt_rlf(self, now: float, new: Rlf, text: str, out: list[Any]) -> None:
        self.table.claims = {}
        super()._adopt_rlf(now, new, text, out)


class NoAdoptionHoldServer(LicenseServer):
    """Takes the seats a claim brought as free: the heartbeat's `adopt` list is ignored,
    so the raised allowance goes to whichever client asks first, while the claimant's
    old lease still runs."""

    def _take_adoptions(self, now: float, adopt: tuple[Any, ...], out: list[Any]) -> None:
        self.adopted = {}


class ReplayAcceptingServer(LicenseServer):
    """Honours a ticket that was used before (the use-once check undone): a client that
    presents its ticket to a second server moves a second seat."""

    def _claim(
        self,
        now: float,
        target: str,
        client_id: str,
        lic: str,
        count: int,
        text: str,
        out: list[Any],
    ) -> str:
        try:
            t = claims.read(self.claim_key, text, client_id, lic)
        except claims.ClaimError:
            pass
        else:
            self.table.claims.pop(t.key, None)
        return super()._claim(now, target, client_id, lic, count, text, out)


def _factory(cls: type[LicenseServer]) -> Any:
    def make(sid: str, rlf: Rlf, now: float, today: date, p: Persisted | None) -> LicenseServer:
        return cls(sid, rlf, now=now, today=today, persisted=p, claim_key=TEST_CLAIM_KEY)

    return make


@pytest.mark.parametrize(
    ("cls", "seed"),
    [
        (PushForgetsClaimsServer, 10797),
        (NoAdoptionHoldServer, 11577),
        (ReplayAcceptingServer, 1),
    ],
    ids=["claims-lost-on-push", "claimed-seat-taken-as-free", "replayed-ticket"],
)
def test_s1_catches_a_claim_that_moves_a_seat_twice(cls: type[LicenseServer], seed: int) -> None:
    """Seeds the sweeps found: the real engine passes them, and each hole it had (claims
    forgotten by an RLF push; a claimed seat arriving as free allowance) or could have (a
    ticket honoured twice) makes S1 fire on the same seed. Two other holes the sweeps
    found no longer show on any seed the engine's current schedules reach (a dropped
    entry's seat given away while its ticket may still be claimed: seed 11572 before;
    an entry a claim brought dropped for the claimed ticket: seed 21035 before); their
    guards are pinned by `tests/engine/test_claims_failover.py`, each test failing with
    its guard undone."""
    run_seed(seed, random.Random(seed), l2="measure")
    with pytest.raises(SimFailure) as err:
        run_seed(seed, random.Random(seed), l2="measure", factory=_factory(cls))
    assert err.value.violation.invariant == "S1", err.value
