"""What a server knows only while it leads: `LeaderState`, with one `Progress` per peer.

`LicenseServer._become(LEADER)` creates a `LeaderState`; stepping down drops it (the
allowance it held for itself survives as a follower's allowance). Nothing here decides:
the rules live in `leading` (heartbeats, ACKs, leases), `tables` (the `Ledger`) and
`claims`; this module only holds the bookkeeping they share, so leader-only state cannot
outlive the leadership it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lm_core.engine.tables import Cfg, Ledger

NEVER = float("inf")


@dataclass(slots=True)
class PendingAdmin:
    """An admin change applied by the leader, answered once a majority holds `cfg`."""

    cfg: Cfg
    rlf_seq: int
    request_id: int
    token: str
    via: str | None  # the follower that forwarded it (None: asked here)
    deadline: float
    message: str
    data: dict[str, Any]


@dataclass(slots=True)
class ClaimWait:
    """A claim the leader honoured, credited to `target` once `cfg` is durable and the
    granting server has let go of the seats (`source_done`: it ACKed the heartbeat that
    revoked them, or its lease ran out, before `ticket_until`)."""

    cfg: Cfg
    target: str
    license: str
    count: int
    key: str
    client_id: str
    until: float  # the client's lease from the granting server has surely ended by then
    source: str = ""  # the granting server
    ticket_until: float = NEVER  # the claim window of the ticket ends then (my clock)
    source_done: bool = True  # the granting server has let go of the seats
    first_seq: int = 0  # the first heartbeat to `target` that carried it (0: none yet)


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower (raft's `tracker.Progress`)."""

    acked_seq: int = 0  # highest heartbeat seq it ACKed
    last_ack_recv: float = -NEVER  # my clock when its newest ACK arrived
    last_ack_ts: float = 0.0  # its own clock reading in that ACK (0: none to echo)
    last_ack_key: tuple[int, float] = (0, -NEVER)  # (seq, ts) of the newest ACK taken
    acked_cfg: tuple[int, Cfg] | None = None  # (RLF seq, config version) it holds
    last_sync_sent: float = -NEVER
    last_rlf_sent: float = -NEVER

    @property
    def acked(self) -> bool:
        """An ACK of this leadership arrived."""
        return self.last_ack_recv != -NEVER


@dataclass(slots=True)
class LeaderState:
    """Heartbeat, lease, admin and claim bookkeeping of one leadership."""

    ledger: Ledger
    became_leader_at: float
    prev_heard: tuple[int, int, float]  # the last heartbeat I applied as a follower
    prev_log: dict[int, float]  # seq -> echo of that term's heartbeats I applied lately
    short: set[str]  # licenses whose allowances still lag the table
    hb_seq: int = 0
    hb_times: dict[int, float] = field(default_factory=dict)  # seq -> send time
    next_hb: float = NEVER
    lease_end: float = -NEVER
    lease_q: int = 0  # the heartbeat seq the lease runs from
    lease_granted: dict[str, float] = field(default_factory=dict)  # peer -> lease ends by
    progress: dict[str, Progress] = field(default_factory=dict)
    pending: list[PendingAdmin] = field(default_factory=list)
    claim_waits: list[ClaimWait] = field(default_factory=list)
    credited: list[ClaimWait] = field(default_factory=list)  # repeated in heartbeats till `until`
    revoke_seq: dict[str, dict[str, int]] = field(default_factory=dict)  # peer -> key -> seq

    def peer(self, server: str) -> Progress:
        """`server`'s progress record (a fresh one if it never ACKed)."""
        p = self.progress.get(server)
        if p is None:
            p = self.progress[server] = Progress()
        return p
