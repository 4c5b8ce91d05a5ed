"""The client state machine on its own: leases from send time, heartbeats, fail-over walk,
retrying its own server on a transient refusal."""

from __future__ import annotations

import pytest

from lm_core.engine.client import (
    Authorized,
    ClientMachine,
    ClientState,
    Denied,
    Lost,
    ReleasedLocally,
    SendTo,
)
from lm_core.engine.messages import (
    Authorize,
    ClientHeartbeat,
    Deny,
    Release,
    Request,
    ServerAddress,
)

SERVERS = tuple(ServerAddress(id=i, address=f"10.0.0.{k}:27000") for k, i in enumerate("ABC"))
LIC = "Application 1.0"


def machine(**kw: object) -> ClientMachine:
    return ClientMachine("c1", "eng", LIC, SERVERS, home="B", answer_timeout=1.0, **kw)  # type: ignore[arg-type]


def authorize(rid: int, sender: str = "B", lease: float = 6.0, hb: float = 2.0) -> Authorize:
    return Authorize(
        pool="eng",
        sender=sender,
        request_id=rid,
        license=LIC,
        count=1,
        lease=lease,
        heartbeat_interval=hb,
        servers=SERVERS,
    )


def deny(rid: int, reason: str, sender: str = "B", retry_after: float = 0.0) -> Deny:
    return Deny(
        pool="eng",
        sender=sender,
        request_id=rid,
        license=LIC,
        reason=reason,
        retry_after=retry_after,
    )


def sent(effects: list[object]) -> list[tuple[str, object]]:
    return [(e.server, e.msg) for e in effects if isinstance(e, SendTo)]


def test_request_goes_home_and_lease_runs_from_send_time() -> None:
    m = machine()
    [(to, req)] = sent(m.acquire(100.0))
    assert to == "B"
    assert isinstance(req, Request)
    # The answer arrives late (0.8 s): the lease still counts from the send time.
    out = m.handle(100.8, "B", authorize(req.request_id))
    assert m.state is ClientState.HOLDING
    assert m.lease_expires == 106.0
    assert any(isinstance(e, Authorized) and not e.renewed for e in out)
    assert m.holds(105.9)
    assert not m.holds(106.0)


def test_heartbeats_renew_and_duplicates_do_not_extend() -> None:
    m = machine()
    [(_, req)] = sent(m.acquire(0.0))
    m.handle(0.1, "B", authorize(req.request_id))
    assert m.next_deadline == 2.0
    [(to, hb)] = sent(m.tick(2.0))
    assert to == "B"
    assert isinstance(hb, ClientHeartbeat)
    assert not hb.failover
    m.handle(2.2, "B", authorize(hb.request_id))
    assert m.lease_expires == 8.0
    m.handle(3.0, "B", authorize(hb.request_id))  # a duplicate of the same answer
    assert m.lease_expires == 8.0
    m.handle(3.0, "B", authorize(999))  # an answer to nothing we sent
    assert m.lease_expires == 8.0


def test_silent_server_starts_failover_walk_in_priority_order() -> None:
    m = machine()
    [(_, req)] = sent(m.acquire(0.0))
    m.handle(0.1, "B", authorize(req.request_id))
    sent(m.tick(2.0))  # heartbeat to B, never answered
    [(to, hb)] = sent(m.tick(3.0))
    assert m.state is ClientState.FAILOVER
    assert to == "A"
    assert isinstance(hb, ClientHeartbeat)
    assert hb.failover  # B last
    # A denies: try the next one (C), still believing the old lease.
    [(to2, hb2)] = sent(m.handle(3.1, "A", deny(hb.request_id, "no_seats", "A")))
    assert to2 == "C"
    assert m.holds(3.1)
    out = m.handle(3.2, "C", authorize(hb2.request_id, "C"))
    assert m.state is ClientState.HOLDING
    assert m.server == "C"
    assert m.lease_expires == 3.1 + 6.0
    assert any(isinstance(e, Authorized) for e in out)


def holding(lease: float = 6.0) -> tuple[ClientMachine, ClientHeartbeat]:
    """A client authorized by B at 0.0 (lease 6 s, heartbeat 2 s) that just heartbeated B
    at 2.0; returns it and that heartbeat."""
    m = machine()
    [(_, req)] = sent(m.acquire(0.0))
    m.handle(0.1, "B", authorize(req.request_id, lease=lease))
    [(to, hb)] = sent(m.tick(2.0))
    assert to == "B"
    assert isinstance(hb, ClientHeartbeat)
    return m, hb


@pytest.mark.parametrize("reason", ["no_majority", "restart_grace", "no_seats"])
def test_transient_refusal_with_lease_left_retries_the_same_server(reason: str) -> None:
    m, hb = holding()
    # B is alive but cannot renew now (say, an election): no walk, no message yet.
    assert m.handle(2.1, "B", deny(hb.request_id, reason, retry_after=0.5)) == []
    assert m.state is ClientState.HOLDING
    assert m.server == "B"
    assert m.lease_expires == 6.0  # still from the send time of the last authorized one
    assert m.next_deadline == 2.6  # retry_after
    assert m.tick(2.5) == []
    [(to, again)] = sent(m.tick(2.6))
    assert to == "B"
    assert isinstance(again, ClientHeartbeat)
    assert not again.failover
    out = m.handle(2.7, "B", authorize(again.request_id))
    assert m.server == "B"
    assert m.lease_expires == 2.6 + 6.0  # from the retry's send time
    assert [e.renewed for e in out if isinstance(e, Authorized)] == [True]


def test_retry_waits_at_least_the_floor_and_at_most_until_the_walk_must_start() -> None:
    m, hb = holding()
    assert m.retry_floor == 0.25
    assert m.handle(2.1, "B", deny(hb.request_id, "no_majority", retry_after=0.0)) == []
    assert m.next_deadline == 2.1 + 0.25  # no hint: the floor, not a hot loop
    [(_, again)] = sent(m.tick(2.35))
    # A long hint is cut so the last try still leaves heartbeat_interval + answer_timeout
    # (2 + 1 s) of lease for a walk.
    assert m.handle(2.4, "B", deny(again.request_id, "restart_grace", retry_after=30.0)) == []
    assert m.next_deadline == 6.0 - 3.0


def test_walk_when_the_lease_is_nearly_out() -> None:
    m, hb = holding()
    assert m.handle(2.1, "B", deny(hb.request_id, "no_majority", retry_after=0.5)) == []
    [(_, again)] = sent(m.tick(2.6))
    # 3.1 s left < heartbeat 2 + answer timeout 1 + floor 0.25: fail over now.
    [(to, walk)] = sent(m.handle(2.9, "B", deny(again.request_id, "no_majority", retry_after=0.5)))
    assert m.state is ClientState.FAILOVER
    assert to == "A"  # priority order, B last
    assert isinstance(walk, ClientHeartbeat)
    assert walk.failover
    assert m.lease_expires == 6.0  # walking does not extend what the client believes
    assert m.holds(5.99)
    # In fail-over mode a refusal moves on to the next server at once.
    [(to2, _)] = sent(m.handle(3.0, "A", deny(walk.request_id, "no_majority", "A", 0.5)))
    assert to2 == "C"


@pytest.mark.parametrize("reason", ["unreachable", "disassociated"])
def test_server_down_or_gone_walks_at_once_despite_lease_left(reason: str) -> None:
    m, hb = holding(lease=60.0)
    [(to, walk)] = sent(m.handle(2.1, "B", deny(hb.request_id, reason, retry_after=0.5)))
    assert m.state is ClientState.FAILOVER
    assert to == "A"
    assert isinstance(walk, ClientHeartbeat)
    assert walk.failover


def test_silent_server_walks_at_the_answer_timeout_despite_lease_left() -> None:
    m, _hb = holding(lease=60.0)
    assert m.next_deadline == 3.0  # the heartbeat's answer timeout
    [(to, walk)] = sent(m.tick(3.0))
    assert m.state is ClientState.FAILOVER
    assert to == "A"
    assert isinstance(walk, ClientHeartbeat)
    assert walk.failover


def test_first_request_walks_on_a_transient_refusal() -> None:
    m = machine()
    [(_, r1)] = sent(m.acquire(0.0))
    # No lease to live on: ask the next server at once, whatever the hint.
    [(to, r2)] = sent(m.handle(0.1, "B", deny(r1.request_id, "no_majority", retry_after=1.0)))
    assert to == "A"
    assert isinstance(r2, Request)
    [(to, r3)] = sent(m.handle(0.2, "A", deny(r2.request_id, "restart_grace", "A", 5.0)))
    assert to == "C"
    assert isinstance(r3, Request)
    assert m.state is ClientState.REQUESTING
    assert not m.holds(0.2)


def test_lease_runs_out_while_walking() -> None:
    m = machine()
    [(_, req)] = sent(m.acquire(0.0))
    m.handle(0.1, "B", authorize(req.request_id))
    sent(m.tick(2.0))
    t = 3.0
    out = m.tick(t)
    while not any(isinstance(e, Lost) for e in out):
        t = m.next_deadline
        out = m.tick(t)
        assert t <= 6.0
    assert not m.holds(6.0)
    assert m.wants


def test_denied_everywhere_waits_then_retries_or_gives_up() -> None:
    m = machine(retry_backoff=5.0)
    [(_, r1)] = sent(m.acquire(0.0))
    [(_, r2)] = sent(m.handle(0.1, "B", deny(r1.request_id, "no_seats")))
    [(_, r3)] = sent(m.handle(0.2, "A", deny(r2.request_id, "no_seats", "A")))
    out = m.handle(0.3, "C", deny(r3.request_id, "no_seats", "C"))
    assert m.state is ClientState.WAITING
    assert any(isinstance(e, Denied) and not e.final for e in out)
    [(to, again)] = sent(m.tick(5.3))
    assert to == "B"
    assert isinstance(again, Request)

    once = machine(retry=False)
    [(_, r1)] = sent(once.acquire(0.0))
    once.answer_timeout = 0.5
    for t in (1.0, 2.0, 3.0):
        out = once.tick(t)
    assert once.state is ClientState.IDLE
    assert any(isinstance(e, Denied) and e.final for e in out)


def test_final_reasons_stop_the_client() -> None:
    m = machine()
    [(_, r1)] = sent(m.acquire(0.0))
    out = m.handle(0.1, "B", deny(r1.request_id, "unknown_license"))
    assert m.state is ClientState.IDLE
    assert next(e for e in out if isinstance(e, Denied)).final


def test_release_forgets_at_once_and_returns_late_grants() -> None:
    m = machine()
    [(_, req)] = sent(m.acquire(0.0))
    m.handle(0.1, "B", authorize(req.request_id))
    [(_, hb)] = sent(m.tick(2.0))
    out = m.release(2.5)
    assert any(isinstance(e, ReleasedLocally) for e in out)
    [(to, rel)] = sent(out)
    assert to == "B"
    assert isinstance(rel, Release)
    assert not m.holds(2.5)
    assert m.state is ClientState.IDLE
    # The heartbeat's answer arrives after the release: give that seat straight back.
    [(to2, rel2)] = sent(m.handle(2.6, "B", authorize(hb.request_id)))
    assert to2 == "B"
    assert isinstance(rel2, Release)
    assert not m.holds(2.6)
