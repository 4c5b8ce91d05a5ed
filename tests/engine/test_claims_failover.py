"""L2: seats move with their fail-over clients (FIG. 10) only on a genuine, fresh,
use-once ticket; a server keeps renewing through an election; a reclaim sticks."""

from __future__ import annotations

from lm_core.engine.claims import TEST_CLAIM_KEY, ClaimError, Ticket, mint, read
from lm_core.engine.harness import Pool
from lm_core.engine.leases import Clocks
from lm_core.engine.messages import Authorize, Deny, Reclaim, Release, ServerHeartbeat

from . import fullpool
from .fullpool import LIC, answer, hb, req


def full_pool() -> tuple[Pool, dict[str, str]]:
    """The patent's pool (A:40 B:30 C:30), every seat held; returns each client's ticket."""
    return fullpool.full_pool({"A": 40, "B": 30, "C": 30})


def only(answers: list[object]) -> object:
    assert len(answers) == 1, answers
    return answers[0]


def test_ticket_verifies_only_for_its_client_license_and_key() -> None:
    t = Ticket(server="A", serial=7, count=1, term=2, seq=40)
    text = mint(TEST_CLAIM_KEY, t, "c1", LIC)
    assert read(TEST_CLAIM_KEY, text, "c1", LIC) == t
    for client, lic, key in (("c2", LIC, TEST_CLAIM_KEY), ("c1", "Other 1.0", TEST_CLAIM_KEY),
                             ("c1", LIC, b"another pool's key")):  # fmt: skip
        try:
            read(key, text, client, lic)
        except ClaimError:
            continue
        raise AssertionError(f"ticket verified for {client} {lic}")
    forged = text.replace(".1.2.40.", ".5.2.40.")  # five seats instead of one
    try:
        read(TEST_CLAIM_KEY, forged, "c1", LIC)
    except ClaimError:
        pass
    else:
        raise AssertionError("a ticket with a changed count verified")


def test_fig10_full_pool_dead_leader_seats_move_with_its_clients() -> None:
    pool, tickets = full_pool()
    pool.crash("A")
    pool.run(pool.now + 3.5)  # B is elected
    assert pool.leader() == "B"
    for i in range(40):
        ans = only(pool.ask("B", hb(f"A{i}", 5, ticket=tickets[f"A{i}"], failover=True),
                            token=f"f-A{i}"))  # fmt: skip
        assert isinstance(ans, Authorize), (i, ans)
    view = pool.license_view("B", LIC)
    assert view["servers"]["B"]["in_use"] == 70
    # B and C's own clients keep renewing where they are
    for i in range(30):
        assert isinstance(only(pool.ask("C", hb(f"C{i}", 2), token=f"t-C{i}")), Authorize)
    assert all(s.table.conserved() for s in pool.servers.values())


def test_a_claim_is_used_once_and_a_forged_one_moves_nothing() -> None:
    pool, tickets = full_pool()
    pool.crash("A")
    pool.run(pool.now + 3.5)
    assert isinstance(
        only(pool.ask("B", hb("A0", 5, ticket=tickets["A0"], failover=True), token="x")),
        Authorize,
    )
    pool.run(pool.now + 0.2)
    # the same ticket again, by the same client id, at another server: no seat moves
    ans = answer(pool, "C", hb("A0", 6, ticket=tickets["A0"], failover=True), "y")
    assert isinstance(ans, Deny)
    assert pool.servers["C"].keys.get("A0", LIC) is None
    assert table_row(pool, "C") == 30
    # a forged ticket (another client's) moves nothing either
    ans = only(pool.ask("C", hb("intruder", 1, ticket=tickets["A1"], failover=True), token="z"))
    assert isinstance(ans, Deny)
    pool.run(pool.now + 1.0)
    assert pool.servers["C"].keys.get("intruder", LIC) is None
    assert table_row(pool, "C") == 30
    # A1's own claim still works (the forgery did not use it up)
    assert isinstance(answer(pool, "B", hb("A1", 6, ticket=tickets["A1"], failover=True), "w"),
                      Authorize)  # fmt: skip


def table_row(pool: Pool, sid: str) -> int:
    return pool.servers[pool.leader() or "B"].table.licenses[LIC].rows[sid]


def test_renewals_go_on_during_the_election() -> None:
    pool, _ = full_pool()
    pool.crash("A")
    pool.run(pool.now + 2.2)  # C's lease from A has run out; B is not leader yet
    assert pool.leader() is None
    assert not pool.status("C")["serving"]
    for i in range(30):
        ans = only(pool.ask("C", hb(f"C{i}", 2), token=f"t-C{i}"))
        assert isinstance(ans, Authorize), ans
    # ... but nothing new is granted without a lease
    assert isinstance(only(pool.ask("C", req("newcomer"), token="n")), Deny)


def test_a_reclaimed_client_is_told_so_for_good() -> None:
    pool, _ = full_pool()
    reclaim = Reclaim(
        pool="eng", sender="admin", request_id=1, client_id="B0", license=LIC,
        reason="left for the day",
    )  # fmt: skip
    ok = only(pool.ask("B", reclaim, token="adm"))
    assert getattr(ok, "ok", False)
    ans = only(pool.ask("B", hb("B0", 2), token="t-B0"))
    assert isinstance(ans, Deny)
    assert ans.reason == "reclaimed"
    assert "left for the day" in ans.detail


def test_a_claim_on_a_live_server_waits_for_its_ack_of_the_revoke() -> None:
    """B is alive (its client B0 only lost its own connection): the leader moves B0's
    seat to C once B has ACKed the heartbeat that revokes it -- about one heartbeat
    round -- not when B's lease runs out; B's entry for B0 has then ended (held back
    until its claim hold: if the leader fell before crediting the claim, B's count would
    be all that covers B0's lease) and B's allowance is one lower."""
    pool, tickets = full_pool()
    b_allowed = pool.servers["B"].allowed[LIC]
    ans = answer(pool, "C", hb("B0", 5, ticket=tickets["B0"], failover=True), "c-B0")
    if isinstance(ans, Deny):  # the answer waited less than the ACK round: ask again
        ans = answer(pool, "C", hb("B0", 6, ticket=tickets["B0"], failover=True), "c-B0b")
    assert isinstance(ans, Authorize), ans
    # B's entry has ended: held back (still counted) until its claim hold, no longer live
    gone = pool.servers["B"].keys.get("B0", LIC)
    assert gone is None or gone.held
    assert pool.servers["B"].allowed[LIC] == b_allowed - 1
    assert pool.servers["C"].keys.get("B0", LIC) is not None
    # one seat moved: nobody else gets one anywhere
    for sid in "ABC":
        assert isinstance(only(pool.ask(sid, req("newcomer", 9), token=f"n-{sid}")), Deny)
    assert all(s.table.conserved() for s in pool.servers.values())


def test_a_claimed_seat_is_kept_for_its_client_not_the_next_asker() -> None:
    """The seat a claim brings to C arrives reserved for its client (in the heartbeat
    that raises C's allowance): a newcomer asking C first is refused, the claimant is
    served whenever it comes."""
    pool, tickets = full_pool()
    pool.crash("B")
    # B0 asks C, gives up before the seat arrives (its answer is dropped here)
    pool.ask("C", hb("B0", 5, ticket=tickets["B0"], failover=True), token="lost")
    pool.run(pool.now + 12.0)  # B's lease runs out; the claim is credited to C
    pool.replies.pop("lost", None)
    ans = only(pool.ask("C", req("newcomer", 9), token="n"))
    assert isinstance(ans, Deny), ans
    ans = only(pool.ask("C", hb("B0", 6, ticket=tickets["B0"], failover=True), token="again"))
    assert isinstance(ans, Authorize), ans


def test_an_entry_a_claim_brought_survives_the_claimed_ticket() -> None:
    """C served B0 with the seat B0's claim brought, but B0 never heard that Authorize
    and shows B's ticket again: C renews its entry (the seat is B0's) instead of dropping
    it as "moved on", which would leave B0's old lease from B counted nowhere."""
    pool, tickets = full_pool()
    pool.crash("B")
    pool.run(pool.now + 12.0)  # B's lease has run out
    first = answer(pool, "C", hb("B0", 5, ticket=tickets["B0"], failover=True), "unheard")
    assert isinstance(first, Authorize), first
    entry = pool.servers["C"].keys.get("B0", LIC)
    assert entry is not None
    ans = only(pool.ask("C", hb("B0", 6, ticket=tickets["B0"], failover=True), token="again"))
    assert isinstance(ans, Authorize), ans
    kept = pool.servers["C"].keys.get("B0", LIC)
    assert kept is not None
    assert kept.serial == entry.serial
    assert isinstance(only(pool.ask("C", req("newcomer", 9), token="n")), Deny)


def test_a_dropped_entry_is_held_while_its_ticket_may_still_be_claimed() -> None:
    """B0 stops heartbeating B (cut off from it, say): its entry ends after the keep-time,
    but B keeps counting the seat (held back) while B0's last ticket may still be
    claimed elsewhere -- else B could give it to a newcomer, die, and B0's claim would
    move the same seat a second time. After the claim hold the seat is free again."""
    pool, tickets = full_pool()
    clocks = Clocks.from_timing(pool.servers["B"].rlf.timing)
    keep, hold = clocks.client_keep, clocks.claim_hold
    assert hold > keep + 1.0
    pool.run(pool.now + (keep + hold) / 2)  # B0's entry has ended, its ticket has not
    assert pool.status("B")["serving"]
    ans = only(pool.ask("B", req("newcomer", 9), token="n1"))
    assert isinstance(ans, Deny), ans
    # B0 itself may still come back to its seat
    assert isinstance(only(pool.ask("B", hb("B0", 5), token="b0")), Authorize)
    del tickets


def test_a_leader_back_from_a_quick_restart_lets_its_clients_seats_move() -> None:
    """A crashes and is back (and leading again) before its clients' leases ran out; its
    clients walked meanwhile and show A's tickets at B. The leader that would revoke those
    seats is A itself: it lets go of the entry at once and moves exactly that seat to B
    (a leader's own tickets used to be refused, leaving its clients seatless in a full
    pool until their leases lapsed)."""
    pool, tickets = full_pool()
    pool.crash("A")
    pool.run(pool.now + 0.5)
    pool.start("A")
    pool.run(pool.now + 3.0)
    assert pool.leader() == "A"
    ans = answer(pool, "B", hb("A0", 5, ticket=tickets["A0"], failover=True), "c-A0")
    assert isinstance(ans, Authorize), ans
    assert pool.servers["A"].keys.get("A0", LIC) is None or pool.servers["A"].keys.get(
        "A0", LIC
    ).revoked  # fmt: skip
    assert table_row(pool, "A") == 39
    assert table_row(pool, "B") == 31
    # the seat moved, it was not made: nobody else gets one anywhere
    for sid in "ABC":
        assert isinstance(only(pool.ask(sid, req("newcomer", 9), token=f"n-{sid}")), Deny)
    # and the ticket moves nothing a second time
    again = answer(pool, "C", hb("A0", 6, ticket=tickets["A0"], failover=True), "c-A0b")
    assert isinstance(again, Deny), again
    assert all(s.table.conserved() for s in pool.servers.values())


def test_a_leaders_ticket_of_a_released_seat_moves_nothing() -> None:
    """A0 released its seat at the leader A, and a newcomer took it: A0's old ticket,
    shown at B, must not move a seat that is now the newcomer's."""
    pool, tickets = full_pool()
    rel = Release(pool="eng", sender="A0", request_id=2, license=LIC)
    pool.ask("A", rel, token="rel")
    assert isinstance(only(pool.ask("A", req("newcomer", 1), token="n")), Authorize)
    ans = answer(pool, "B", hb("A0", 5, ticket=tickets["A0"], failover=True), "c-A0")
    assert isinstance(ans, Deny), ans
    assert pool.servers["A"].keys.get("newcomer", LIC) is not None
    assert table_row(pool, "A") == 40
    assert all(s.table.conserved() for s in pool.servers.values())


def test_a_restarted_server_without_room_sends_its_clients_on_with_their_tickets() -> None:
    """B crashes; B0's claim moves its seat to C. B is back with its store: B0's entry is
    revoked but still counted (held back until its claim hold), so the pool counts that
    seat twice and B's allowance cannot be raised to re-adopt B1. B tells B1 to fail over
    now (not "ask me again", which would outlast B1's lease): B1's ticket then moves
    its seat to A once B has let go of it."""
    pool, tickets = full_pool()
    pool.crash("B")
    pool.run(pool.now + 2.5)  # B's lease has run out: B0's claim is honoured at once
    assert isinstance(answer(pool, "C", hb("B0", 5, ticket=tickets["B0"], failover=True), "c0"),
                      Authorize)  # fmt: skip
    pool.start("B")
    pool.run(pool.now + 2.0)
    assert pool.status("B")["serving"]
    ans = only(pool.ask("B", hb("B1", 5), token="b1"))
    assert isinstance(ans, Deny), ans
    assert ans.reason == "fail_over", ans
    moved = answer(pool, "A", hb("B1", 6, ticket=tickets["B1"], failover=True), "c1")
    assert isinstance(moved, Authorize), moved
    assert all(s.table.conserved() for s in pool.servers.values())


class Holders:
    """Clients that keep heartbeating their servers every second (the steady users of
    a full pool), and when each believes its lease runs out."""

    def __init__(self, pool: Pool, homes: dict[str, str], lease: float = 6.0) -> None:
        self.pool, self.home, self.lease = pool, dict(homes), lease
        self.rid = dict.fromkeys(homes, 10)
        self.until = dict.fromkeys(homes, pool.now + lease)

    def granted(self, client: str, server: str, answer: object) -> None:
        if isinstance(answer, Authorize):
            self.home[client] = server
            self.until[client] = self.pool.now + self.lease
            self.rid.setdefault(client, 10)

    def run(self, until: float) -> None:
        while self.pool.now < until:
            self.pool.run(self.pool.now + 1.0)
            for client, server in list(self.home.items()):
                if server in self.pool.servers:
                    self.rid[client] += 1
                    got = self.pool.ask(server, hb(client, self.rid[client]), token=client)
                    if got:
                        self.granted(client, server, got[0])

    def believers(self) -> int:
        return sum(1 for u in self.until.values() if u > self.pool.now)


def test_seats_kept_for_a_claimant_end_with_the_adopters_lease() -> None:
    """C asks the leader for B0's claimed seat and is paused at once (SIGSTOP): the
    leader credits the claim and lists the seat in its heartbeats to C, which queue up.
    C stays paused past its fence, and the leader hands out everything C had. When C
    runs again it reads the queued heartbeats: the seat they promise is no longer C's,
    and C must not seat B0 with it (seed 5356 did: 4 seats believed held of 3)."""
    dist = {"A": 4, "B": 2, "C": 2, "D": 1, "E": 1}
    pool, tickets = fullpool.full_pool(dist, seats=10)
    users = Holders(pool, {f"{s}{i}": s for s, n in dist.items() for i in range(n) if s != "B"})
    pool.crash("B")
    users.run(pool.now + 2.5)  # B's lease has run out: a claim of its ticket is credited
    c = pool.servers["C"]
    claim = hb("B0", 5, ticket=tickets["B0"], failover=True)
    pool._apply("C", c.handle(pool.now, "lost", claim))  # C asks the leader ...
    del pool.servers["C"]  # ... and is paused
    sent_before = len(pool.sent)
    users.run(pool.now + Clocks.from_timing(c.rlf.timing).fence + 2.0)
    ledger = pool.servers["A"].ledger
    assert ledger is not None
    assert "C" in ledger.fenced
    queued = [(src, dst, msg) for src, dst, msg in pool.sent[sent_before:] if dst == "C"]
    assert any(isinstance(m, ServerHeartbeat) and m.adopt for _, _, m in queued)
    for i in range(4):  # B's and C's seats go to newcomers
        users.granted(f"new{i}", "A", only(pool.ask("A", req(f"new{i}", 1), token=f"n{i}")))
    assert users.believers() == 10
    pool.servers["C"] = c  # SIGCONT: the queued messages arrive
    pool.queue.extend(queued)
    users.run(pool.now + 3.0)
    assert pool.status("C")["serving"]
    again = answer(pool, "C", hb("B0", 7, ticket=tickets["B0"], failover=True), "again")
    users.granted("B0", "C", again)
    assert users.believers() <= 10, again


def test_no_renewal_in_an_election_while_a_claim_of_a_shown_ticket_may_arrive() -> None:
    """B1 skipped request ids at B (it spoke to other servers, and may have shown them
    B's ticket): while that ticket can still be claimed, B renews B1 in an election only
    under a lease (a claim honoured meanwhile would move the seat B renewed); B0, whose
    ids run on, is renewed as usual (the renew window)."""
    pool, _ = full_pool()
    assert isinstance(only(pool.ask("B", hb("B0", 2), token="b0")), Authorize)
    assert isinstance(only(pool.ask("B", hb("B1", 7), token="b1")), Authorize)  # skipped 2-6
    entry = pool.servers["B"].keys.get("B1", LIC)
    assert entry is not None
    assert entry.skip_hold > pool.now
    pool.crash("A")
    pool.run(pool.now + 2.2)  # B's lease from A has run out; no new leader yet
    assert not pool.status("B")["serving"]
    assert isinstance(only(pool.ask("B", hb("B0", 3), token="b0")), Authorize)
    ans = only(pool.ask("B", hb("B1", 8), token="b1"))
    assert isinstance(ans, Deny), ans
    assert ans.reason == "no_majority"
