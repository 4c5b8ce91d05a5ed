"""The client state machine on its own: leases from send time, heartbeats, fail-over walk."""

from __future__ import annotations

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


def deny(rid: int, reason: str, sender: str = "B") -> Deny:
    return Deny(pool="eng", sender=sender, request_id=rid, license=LIC, reason=reason)


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


def test_deny_no_majority_on_heartbeat_fails_over() -> None:
    m = machine()
    [(_, req)] = sent(m.acquire(0.0))
    m.handle(0.1, "B", authorize(req.request_id))
    [(_, hb)] = sent(m.tick(2.0))
    [(to, _msg)] = sent(m.handle(2.1, "B", deny(hb.request_id, "no_majority")))
    assert to == "A"
    assert m.state is ClientState.FAILOVER


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
