"""Timing rules of the engine, derived from the RLF's `Timing` (all seconds, own clocks).

Every duration a holder measures on its own clock is shrunk by the drift bound and every
duration an observer waits out is stretched by it, so clocks running at different rates
(within `drift`) never make two holders overlap:

* leader lease: from the send time of a heartbeat a majority acknowledged, for
  ``server_lease * (1 - drift)``;
* follower lease: from the follower's own send time of the ACK the leader echoed, for
  at most the leader's remaining lease (counted from when the leader received that
  ACK), shrunk by ``1 - 2*drift``;
* client key-table entry: the server counts a seat until ``client_lease * (1 + 4*drift)
  + heartbeat_interval`` after it granted/renewed it (the client's own lease runs from
  its send time, so it always ends first);
* renew window (L2): a server whose lease ran out keeps *renewing* (never granting
  new, never growing) the authorizations it already holds for ``renew_window =
  leader_timeout + 3*heartbeat_interval`` more, so an election does not interrupt the
  clients of healthy servers;
* fencing: a server out of contact for ``(server_lease + renew_window + client_keep) *
  (1 + 4*drift) + heartbeat_interval`` since max(last ACK received, became leader) can
  no longer hold a lease, renew, nor have a live client; only then may the leader take
  its seats without its ACK;
* claim window (L2): a fail-over claim on a seat is honoured only while the client's
  lease from the server that granted it may still run: ``(server_lease + renew_window +
  client_lease) * (1 + 4*drift) + heartbeat_interval`` after the leader heartbeat that
  gave that server its lease (for a claim minted in the previous leader's term: after
  this leader's own ACK that an earlier heartbeat of that term echoed). It is shorter
  than the fence, so a claim never competes with a fence;
* claim hold (S1 under claims): a server keeps counting the seats of an entry whose
  client it stopped serving without the client's word (lease run out, restart without
  re-adoption) until the entry's last ticket can no longer be claimed:
  ``claim_window * (1 + 4*drift)`` after its lease source reached it (after its restart,
  for entries loaded from its store). Until then it cannot give that seat to another
  client, so a claim of the old ticket never moves a seat that someone else holds;
* election delay: a follower that heard nothing for ``leader_timeout`` sends
  LEADER_CHECK; it stands after ``leader_timeout + rank * heartbeat_interval`` more
  (rank = position in the leader priority list), so higher priority stands first;
* claim wait: a server holds a fail-over client's answer for its claim at most
  ``min(heartbeat_interval, client_heartbeat / 4, 0.75 * ANSWER_TIMEOUT)``;
* restart grace (S4): one client keep-time after a restart with persisted state.
"""

from __future__ import annotations

from dataclasses import dataclass

from lm_core.engine.rlf import Timing

# How long a client waits for a server's answer before it asks the next server (the
# client library's default); a server holding a fail-over client's answer for its claim
# answers well within it, or the client has moved on (and skips that server for a while)
ANSWER_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Clocks:
    """Durations the server uses, computed once per RLF."""

    heartbeat: float
    leader_timeout: float
    server_lease: float  # nominal, as granted
    leader_lease: float  # what a leader counts for itself
    client_lease: float  # what a client is told
    client_heartbeat: float
    client_keep: float  # how long the server counts a seat after a grant/renewal
    fence: float
    grace: float
    drift: float
    retry_after: float  # hint in DENY no_seats
    admin_timeout: float  # an admin op not durable on a majority by then is answered "failed"
    renew_window: float  # renewals (never grants) go on this long after the lease ended
    claim_window: float  # how long after its lease source a fail-over claim is honoured
    claim_wait: float  # how long a server holds a fail-over client's answer for its claim
    claim_hold: float  # how long after its lease source a dropped entry's seats stay counted
    stale_lease: float  # a leader without a majority lease this long steps down
    history: float  # how long a leader remembers its heartbeats' send times
    expiry_bucket: float  # key-table expiries are rounded up to multiples of this

    @classmethod
    def from_timing(cls, t: Timing) -> Clocks:
        d = t.drift
        keep = t.client_lease * (1 + 4 * d) + t.heartbeat_interval
        renew = t.leader_timeout + 3 * t.heartbeat_interval
        claim = (t.server_lease + renew + t.client_lease) * (1 + 4 * d) + t.heartbeat_interval
        return cls(
            heartbeat=t.heartbeat_interval,
            leader_timeout=t.leader_timeout,
            server_lease=t.server_lease,
            leader_lease=t.server_lease * (1 - d),
            client_lease=t.client_lease,
            client_heartbeat=t.client_heartbeat,
            client_keep=keep,
            fence=(t.server_lease + renew + keep) * (1 + 4 * d) + t.heartbeat_interval,
            grace=keep,
            drift=d,
            retry_after=2 * t.heartbeat_interval,
            admin_timeout=5 * t.leader_timeout + 10 * t.heartbeat_interval,
            renew_window=renew,
            claim_window=claim,
            claim_wait=min(t.heartbeat_interval, t.client_heartbeat / 4, 0.75 * ANSWER_TIMEOUT),
            claim_hold=claim * (1 + 4 * d),
            stale_lease=t.leader_timeout,
            history=claim + t.heartbeat_interval,
            expiry_bucket=t.heartbeat_interval / 2,
        )

    def follower_lease(self, granted: float) -> float:
        """What a follower counts of a lease of `granted` seconds."""
        return max(0.0, granted * (1 - 2 * self.drift))

    def election_delay(self, rank: int) -> float:
        """How long after LEADER_CHECK (or start-up) a server of `rank` waits to stand."""
        return self.leader_timeout + rank * self.heartbeat

    def observed(self, span: float) -> float:
        """How long an observer waits for `span` seconds of another server's clock to
        surely pass (stretched by the drift bound of both clocks)."""
        return span * (1 + 2 * self.drift)

    def after_push_delay(self, rank: int) -> float:
        """The latest a server of `rank` stands after adopting a pushed RLF (the new
        RLF may have changed who leads)."""
        return self.election_delay(rank) * 2
