"""The protocol vocabulary: every message is a frozen, slotted dataclass.

One module owns the vocabulary; the runtime's codec turns these into bytes and back
(nothing else touches bytes). Field types are limited to what the codec knows:
str, int, float, bool, None, tuple[T, ...], nested frozen dataclasses from this module,
and `dict[str, Any]` holding plain JSON (status payloads only).

Every message carries the sender (a server id, a client id or an admin name), the pool
name, and the sender's term (0 from clients and admins). A stale term is refused by
the engine, never by the codec.

Sections: client <-> server, admin <-> server, server <-> server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_COUNT = 1_000_000  # seats in one request / one code; bigger is a bad message


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message."""

    pool: str
    sender: str
    term: int = 0


# ---------------------------------------------------------------- client <-> server


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Message):
    """A client asks for `count` authorizations of `license` ("Application 1.0")."""

    request_id: int
    license: str
    count: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHeartbeat(Message):
    """A client keeps its authorization alive. `failover` is set when the client is
    walking the server list after losing its server; a server that does not know the
    client converts the heartbeat to a request (FIG. 10). `ticket` is the ticket of the
    authorization the client still holds (from its last `Authorize`; "" = none): the
    server that adopts the client claims those seats from the server that granted them
    (see `lm_core.engine.claims`)."""

    request_id: int
    license: str
    count: int = 1
    failover: bool = False
    ticket: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(Message):
    """A client gives its authorization back."""

    request_id: int
    license: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerAddress:
    """One pool member as clients see it, in leader-priority order."""

    id: str
    address: str  # "host:port"


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorize(Message):
    """A grant (or renewal). The client's lease runs from when it *sent* the request
    or heartbeat, for `lease` seconds. `servers` is the leader priority list. `ticket`
    is opaque to the client: it presents it in fail-over heartbeats ("" = none)."""

    request_id: int
    license: str
    count: int
    lease: float
    heartbeat_interval: float
    servers: tuple[ServerAddress, ...] = ()
    ticket: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Deny(Message):
    """A refusal. `reason` is a stable machine word (see DENY_REASONS); `detail` is
    one human line; `retry_after` is a hint in seconds (0 = try the next server)."""

    request_id: int
    license: str
    reason: str
    detail: str = ""
    retry_after: float = 0.0


DENY_REASONS = (
    "no_seats",  # no allocation free here, nor borrowable now
    "no_majority",  # majority rule: this server holds no lease from a majority leader
    "restart_grace",  # restarted less than one client lease ago (S4)
    "unknown_license",  # no such license in the RLF
    "expired",  # every code of the license has expired
    "disassociated",  # this server is out of the pool
    "reclaimed",  # an operator reclaimed this authorization
    "bad_request",  # count out of range or similar
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Released(Message):
    """The server's answer to Release (sent even when it did not know the client)."""

    request_id: int
    license: str


# ---------------------------------------------------------------- admin <-> server
# Admin operations are accepted by any server; a follower forwards them to the
# leader. The answer (AdminReply) comes only once the change is durable on a
# majority (S6). `request_id` is chosen by the admin client.


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRequest(Message):
    """Ask one server for its own view (LicenseServer.status)."""

    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReply(Message):
    request_id: int
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch(Message):
    """Ask for StatusReply pushes on every change (throttled by the runtime)."""

    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeDistribution(Message):
    """CHANGE_DISTRIBUTION: new per-server distribution of one license; the rest of the
    hard limit goes to the free pool."""

    request_id: int
    license: str
    distribution: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AddAllocations(Message):
    """ADD_ALLOCATIONS: an add-on license code (kind "add") raising a license's seats."""

    request_id: int
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddLicenseCode(Message):
    """ADD_LICENSE_CODE: a new license code for the pool."""

    request_id: int
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRlf(Message):
    """UPDATE_RLF: a complete signed RLF (its text) with a higher sequence number."""

    request_id: int
    rlf_text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reclaim(Message):
    """An operator takes back a stale authorization (logged with the reason)."""

    request_id: int
    client_id: str
    license: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminReply(Message):
    """Answer to an admin operation. `ok` False means refused; `message` says why in
    one line. `data` may carry details (e.g. {"config_version": 7, "rlf_seq": 3})."""

    request_id: int
    ok: bool
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- server <-> server
# Defined by the engine's server module owner below this line.
#
# Leader -> follower: ServerHeartbeat (lease grant, per-follower allowance), DistributionSync,
# RlfTransfer, BorrowGrant. Follower -> leader: ServerAck (own rows), LeaderCheck,
# BorrowRequest, ForwardedAdmin. Anyone: ServerUp/ServerUpReply, VoteRequest/VoteReply
# (pre-votes and real votes), RlfOffer/RlfAccept/RlfTransfer. Config versions are
# ordered pairs (cfg_term, cfg_version). See docs/ENGINE.md.


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowance:
    """How many seats of `license` a follower may have in use (its serving limit)."""

    license: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseRow:
    """A follower's own row of one license, as it reports it in its ACK."""

    license: str
    distribution: int
    allowed: int
    in_use: int
    grace: int = 0  # seats held back by restart grace on top of in_use (S4)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerCount:
    """One server's current distribution of one license."""

    id: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseDistribution:
    """The pool-wide distribution of one license (leader's table, without in-use)."""

    license: str
    hard_limit: int
    expires: str  # ISO date of the last day a base code is valid
    free_pool: int
    rows: tuple[ServerCount, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHeartbeat(Message):
    """HEARTBEAT leader -> follower, every heartbeat interval.

    `echo` is the follower's own clock reading from its latest ACK the leader has seen
    (0 = none yet); the follower may serve until ``echo + lease`` on its own clock.
    `up` lists the servers the leader is in contact with (itself included).
    `allowed` is the follower's serving limit per license; None = keep what you have
    (a new leader that has not yet heard the follower's rows). `revoke` lists the
    tickets this follower minted whose seats moved to another server with their client:
    before anything else, the follower drops those key-table entries and lowers its own
    allowance by their seats, once per ticket."""

    seq: int
    echo: float = 0.0
    lease: float = 0.0
    up: tuple[str, ...] = ()
    cfg_term: int = 0
    cfg_version: int = 0
    rlf_seq: int = 0
    allowed: tuple[Allowance, ...] | None = None
    revoke: tuple[ClaimRecord, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerAck(Message):
    """ACK follower -> leader: answers heartbeat `seq` (0 = none yet), reports the
    follower's own rows and the config version it holds durably. `ts` is the follower's
    clock at sending (echoed back to anchor its lease). `ok` False = refused (stale
    term: `term` then carries the refuser's higher term)."""

    seq: int = 0
    ts: float = 0.0
    ok: bool = True
    cfg_term: int = 0
    cfg_version: int = 0
    rlf_seq: int = 0
    rows: tuple[LicenseRow, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderCheck(Message):
    """LEADER_CHECK: a follower that heard no heartbeat asks the leader if it is alive;
    a live leader answers with a heartbeat."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteRequest(Message):
    """Election: `term` is the term the candidate stands for. `pre` = pre-vote (asks
    "would you vote?" without changing anyone's term)."""

    pre: bool = False
    cfg_term: int = 0
    cfg_version: int = 0
    rlf_seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteReply(Message):
    """`for_term` is the term asked for; `term` the voter's own. `leader` names a leader
    the voter is following (set when refusing because a leader exists)."""

    for_term: int
    pre: bool = False
    granted: bool = False
    leader: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerUp(Message):
    """SERVER_UP: a server announces it started, with its RLF sequence and config version."""

    rlf_seq: int = 0
    cfg_term: int = 0
    cfg_version: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerUpReply(Message):
    """Answer to SERVER_UP with the answerer's RLF sequence and the leader it follows."""

    rlf_seq: int = 0
    cfg_term: int = 0
    cfg_version: int = 0
    leader: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RlfOffer(Message):
    """RLF_OFFER: "I hold a newer RLF (sequence `rlf_seq`)"."""

    rlf_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RlfAccept(Message):
    """Answer to RLF_OFFER: "send it" (the receiver is in receive mode)."""

    rlf_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RlfTransfer(Message):
    """RLF_TRANSFER: the complete signed RLF text."""

    rlf_text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BorrowRequest(Message):
    """BORROW_REQUEST follower -> leader: `count` more seats of `license` wanted.
    `failover` = for a client in fail-over mode (claims 13-15: the leader may also take
    from other functioning followers)."""

    license: str
    count: int
    failover: bool = False
    claim: str = ""  # a fail-over client's ticket: move exactly its seats here (L2)
    client_id: str = ""  # the client that presented `claim`


@dataclass(frozen=True, slots=True, kw_only=True)
class BorrowGrant(Message):
    """BORROW_GRANT leader -> follower: `count` seats moved to it (0 = none found now).
    The seats themselves arrive with the DistributionSync and heartbeat allowance.
    `claim` echoes the ticket key of an honoured claim (sent once it is durable)."""

    license: str
    count: int
    detail: str = ""
    claim: str = ""
    client_id: str = ""
    hold_for: float = 0.0  # keep the claim's seats for `client_id` this long (seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributionSync(Message):
    """DISTRIBUTION_SYNC (distribution criteria sync) leader -> follower: the whole
    distribution table at config version (cfg_term, cfg_version), plus the license codes
    added at run time. The follower persists it, then ACKs with that version."""

    cfg_term: int
    cfg_version: int
    rlf_seq: int
    licenses: tuple[LicenseDistribution, ...] = ()
    codes: tuple[str, ...] = ()
    claims: tuple[ClaimRecord, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRecord:
    """An honoured fail-over claim: the ticket key ("server:serial"), the term it was
    minted in, and the seats of `license` it moved away from that server."""

    key: str
    term: int
    license: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardedAdmin(Message):
    """A follower forwards an admin operation to the leader. `token` is the follower's
    connection token to answer on; `op` the admin message as received."""

    token: str
    op: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardedReply(Message):
    """The leader's answer to a forwarded admin operation, relayed to `token`."""

    token: str
    reply: AdminReply
