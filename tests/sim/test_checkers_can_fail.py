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

from lm_core.engine.effects import Persisted, Reply
from lm_core.engine.messages import Authorize, Deny
from lm_core.engine.rlf import Rlf
from lm_core.engine.server import LicenseServer
from lm_core.engine.sim.invariants import (
    AdminLedger,
    LeaderTerms,
    SeatLedger,
    Violation,
    check_conservation,
    check_healed,
)
from lm_core.engine.sim.scenario import run_script

sys.path.insert(0, str(Path(__file__).parent))
from toyserver import careless_factory, toy_factory


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
