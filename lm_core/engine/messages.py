"""The protocol vocabulary: every message is a frozen, slotted dataclass.

One module owns the vocabulary; the runtime's codec turns these into bytes and back
(nothing else touches bytes). Field types are limited to what the codec knows:
str, int, float, bool, None, tuple[T, ...], nested frozen dataclasses from this module,
and `dict[str, Any]` holding plain JSON (status payloads only).

Field types name their bounds (`lm_core.engine.limits`: `Counter`, `Seats`, `Name`,
`License`, `Sender`, `Line`, ...); the codec refuses a decoded value outside them, so a
handler never sees a sequence past 2**53 - 1 or a megabyte pool name.

Every message carries the sender (a server id, a client id or an admin name), the pool
name, and the sender's term (0 from clients and admins). A stale term is refused by
the engine, never by the codec.

Sections: client <-> server, admin <-> server, server <-> server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from lm_core.engine.identity import ClientIdentity
from lm_core.engine.limits import (
    HARD_LIMIT_MAX,
    LICENSE_MAX,
    SEATS_MAX,
    USAGE_PAGE_MAX,
    Clock,
    CodeText,
    Counter,
    IntRange,
    License,
    Line,
    Name,
    RlfText,
    Seats,
    Seconds,
    Sender,
    Text,
    Token,
)

# A field added to the protocol later: absent on the wire means None, and None is not
# written (the codec), so older clients' frames stay valid and unchanged.
OPTIONAL = {"wire": "optional"}

MAX_COUNT = SEATS_MAX  # seats in one request; the engine denies more with "bad_request"
IsoDate = Annotated[str, Text(10, ident=True)]
TicketText = Annotated[str, Text(256, ident=True)]  # opaque to clients (see claims.py)
ClaimKey = Annotated[str, Text(96, ident=True)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message."""

    pool: Name
    sender: Sender
    term: Counter = 0


# ---------------------------------------------------------------- client <-> server


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Message):
    """A client asks for `count` authorizations of `license` ("Application 1.0")."""

    request_id: Counter
    license: License
    count: Seats = 1
    # who asks (user, host, pid, program, ...); optional on the wire (older clients)
    identity: ClientIdentity | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHeartbeat(Message):
    """A client keeps its authorization alive. `failover` is set when the client is
    walking the server list after losing its server; a server that does not know the
    client converts the heartbeat to a request (FIG. 10). `ticket` is the ticket of the
    authorization the client still holds (from its last `Authorize`; "" = none): the
    server that adopts the client claims those seats from the server that granted them
    (see `lm_core.engine.claims`). `identity` is sent with fail-over heartbeats (the
    adopting server has not seen the client's request); None on ordinary renewals."""

    request_id: Counter
    license: License
    count: Seats = 1
    failover: bool = False
    ticket: TicketText = ""
    identity: ClientIdentity | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(Message):
    """A client gives its authorization back."""

    request_id: Counter
    license: License


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerAddress:
    """One pool member as clients see it, in leader-priority order."""

    id: Name
    address: Sender  # "host:port"


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorize(Message):
    """A grant (or renewal). The client's lease runs from when it *sent* the request
    or heartbeat, for `lease` seconds. `servers` is the leader priority list. `ticket`
    is opaque to the client: it presents it in fail-over heartbeats ("" = none)."""

    request_id: Counter
    license: License
    count: Seats
    lease: Seconds
    heartbeat_interval: Seconds
    servers: tuple[ServerAddress, ...] = ()
    ticket: TicketText = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Deny(Message):
    """A refusal. `reason` is a stable machine word (`vocab.DenyReason`); `detail` is
    one human line; `retry_after` is a hint in seconds (0 = try the next server)."""

    request_id: Counter
    license: License
    reason: Name
    detail: Line = ""
    retry_after: Seconds = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Released(Message):
    """The server's answer to Release (sent even when it did not know the client)."""

    request_id: Counter
    license: License


# ---------------------------------------------------------------- admin <-> server
# Admin operations are accepted by any server; a follower forwards them to the
# leader. The answer (AdminReply) comes only once the change is durable on a
# majority (S6). `request_id` is chosen by the admin client. Every change carries the
# admin's `reason` and the `actor`: the daemon that takes the operation from an admin
# connection overwrites `actor` with the identity of the connection's certificate (an
# admin cannot name someone else); the audit log records both (promise A1).


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRequest(Message):
    """Ask one server for its own view (LicenseServer.status)."""

    request_id: Counter


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReply(Message):
    request_id: Counter
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeDistribution(Message):
    """CHANGE_DISTRIBUTION: new per-server distribution of one license; the rest of the
    hard limit goes to the free pool."""

    request_id: Counter
    license: License
    distribution: tuple[tuple[Name, Seats], ...]
    reason: Line = ""
    actor: Line = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AddAllocations(Message):
    """ADD_ALLOCATIONS: an add-on license code (kind "add") raising a license's seats."""

    request_id: Counter
    code: CodeText
    reason: Line = ""
    actor: Line = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AddLicenseCode(Message):
    """ADD_LICENSE_CODE: a new license code for the pool."""

    request_id: Counter
    code: CodeText
    reason: Line = ""
    actor: Line = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRlf(Message):
    """UPDATE_RLF: a complete signed RLF (its text) with a higher sequence number."""

    request_id: Counter
    rlf_text: RlfText
    reason: Line = ""
    actor: Line = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reclaim(Message):
    """An operator takes back a stale authorization (logged with the reason)."""

    request_id: Counter
    client_id: Sender
    license: License
    reason: Line
    actor: Line = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRequest(Message):
    """Ask one server for its audit log rows with sequence number above `since_seq`
    (at most `limit`), oldest first. Read-only: admin and monitor certificates."""

    request_id: Counter
    since_seq: Counter = 0
    limit: Counter = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReply(Message):
    """`audit` holds {"server", "pool", "genesis", "head": {"seq", "hash"}, "rows": [...]}
    (the row shape: lm_core.runtime.audit)."""

    request_id: Counter
    audit: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainServer(Message):
    """An operator drains server `server` for maintenance (`drain` True: it grants and
    renews nothing, its clients move to other servers with their seats) or puts it
    back in service (`drain` False). A configuration change, replicated like the
    distribution table (see `drain`)."""

    request_id: Counter
    server: Sender
    drain: bool = True
    reason: Line = ""
    actor: Line = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminReply(Message):
    """Answer to an admin operation. `ok` False means refused; `message` says why in
    one line. `data` may carry details (e.g. {"config_version": 7, "rlf_seq": 3})."""

    request_id: Counter
    ok: bool
    message: Line = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRequest(Message):
    """Ask one server for its usage log rows in a time window (wall-clock seconds since
    the epoch, UTC): rows that overlap ``[since, until)`` plus the grants still open at
    `since`, with id above `after_id`, oldest first, at most `limit` (paging: ask again
    with the last id while the reply says `more`). Read-only: a monitor may ask. The
    runtime answers it from the store; the engine never sees it."""

    request_id: Counter
    since: Clock = 0.0
    until: Clock = 0.0
    after_id: Counter = 0
    limit: Annotated[int, IntRange(1, USAGE_PAGE_MAX)] = USAGE_PAGE_MAX
    license: Annotated[str, Text(LICENSE_MAX, ident=True)] = ""  # "" = every license


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    """One usage log row: `kind` grant/release/deny/expire/reclaim/moved at `at` (wall
    clock, UTC); a denial stands for one wait: `attempts` retries up to `last_at`."""

    id: Counter
    at: Clock
    kind: Name
    client_id: Sender
    license: License
    count: Annotated[int, IntRange(-HARD_LIMIT_MAX, HARD_LIMIT_MAX)]
    reason: Line = ""
    attempts: Counter = 1
    last_at: Clock = 0.0  # 0: same as `at`
    identity: ClientIdentity | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReply(Message):
    """Answer to UsageRequest. `now` is the server's wall clock when it answered (an open
    grant is held until then); `more` = another page follows."""

    request_id: Counter
    rows: tuple[UsageRecord, ...] = ()
    more: bool = False
    now: Clock = 0.0


# ---------------------------------------------------------------- server <-> server
# Leader -> follower: ServerHeartbeat (lease grant, per-follower allowance), DistributionSync,
# RlfTransfer, BorrowGrant. Follower -> leader: ServerAck (own rows), LeaderCheck,
# BorrowRequest, ForwardedAdmin. Anyone: ServerUp/ServerUpReply, VoteRequest/VoteReply
# (pre-votes and real votes), RlfOffer/RlfAccept/RlfTransfer. Config versions are
# ordered pairs (cfg_term, cfg_version). See docs/ENGINE.md.


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowance:
    """How many seats of `license` a follower may have in use (its serving limit)."""

    license: License
    count: Seats


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseRow:
    """A follower's own row of one license, as it reports it in its ACK."""

    license: License
    distribution: Seats
    allowed: Seats
    in_use: Seats
    grace: Seats = 0  # seats held back by restart grace on top of in_use (S4)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerCount:
    """One server's current distribution of one license."""

    id: Name
    count: Seats


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseDistribution:
    """The pool-wide distribution of one license (leader's table, without in-use)."""

    license: License
    hard_limit: Seats
    expires: IsoDate  # ISO date of the last day a base code is valid
    free_pool: Seats
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
    allowance by their seats, once per ticket. `adopt` lists the claims credited to this
    follower: their seats are in `allowed`, and arrive in the same message reserved for
    the client that brought them (never free for another client on the way)."""

    seq: Counter
    echo: Clock = 0.0
    lease: Seconds = 0.0
    up: tuple[Name, ...] = ()
    cfg_term: Counter = 0
    cfg_version: Counter = 0
    rlf_seq: Counter = 0
    allowed: tuple[Allowance, ...] | None = None
    revoke: tuple[ClaimRecord, ...] = ()
    adopt: tuple[Adoption, ...] | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerAck(Message):
    """ACK follower -> leader: answers heartbeat `seq` (0 = none yet), reports the
    follower's own rows and the config version it holds durably. `ts` is the follower's
    clock at sending (echoed back to anchor its lease). `ok` False = refused (stale
    term: `term` then carries the refuser's higher term)."""

    seq: Counter = 0
    ts: Clock = 0.0
    ok: bool = True
    cfg_term: Counter = 0
    cfg_version: Counter = 0
    rlf_seq: Counter = 0
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
    cfg_term: Counter = 0
    cfg_version: Counter = 0
    rlf_seq: Counter = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteReply(Message):
    """`for_term` is the term asked for; `term` the voter's own. `leader` names a leader
    the voter is following (set when refusing because a leader exists)."""

    for_term: Counter
    pre: bool = False
    granted: bool = False
    leader: Name = ""
    reason: Line = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerUp(Message):
    """SERVER_UP: a server announces it started, with its RLF sequence and config version."""

    rlf_seq: Counter = 0
    cfg_term: Counter = 0
    cfg_version: Counter = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerUpReply(Message):
    """Answer to SERVER_UP with the answerer's RLF sequence and the leader it follows."""

    rlf_seq: Counter = 0
    cfg_term: Counter = 0
    cfg_version: Counter = 0
    leader: Name = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RlfOffer(Message):
    """RLF_OFFER: "I hold a newer RLF (sequence `rlf_seq`)"."""

    rlf_seq: Counter


@dataclass(frozen=True, slots=True, kw_only=True)
class RlfAccept(Message):
    """Answer to RLF_OFFER: "send it" (the receiver is in receive mode)."""

    rlf_seq: Counter


@dataclass(frozen=True, slots=True, kw_only=True)
class RlfTransfer(Message):
    """RLF_TRANSFER: the complete signed RLF text."""

    rlf_text: RlfText


@dataclass(frozen=True, slots=True, kw_only=True)
class BorrowRequest(Message):
    """BORROW_REQUEST follower -> leader: `count` more seats of `license` wanted.
    `failover` = for a client in fail-over mode (claims 13-15: the leader may also take
    from other functioning followers)."""

    license: License
    count: Seats
    failover: bool = False
    claim: TicketText = ""  # a fail-over client's ticket: move exactly its seats here (L2)
    # the whole count of a request the borrower must deny otherwise (0: not one): the
    # leader gathers seats from every source for it (`borrowing.plan_borrow`)
    gather: Counter = 0
    client_id: Sender = ""  # the client that presented `claim`


@dataclass(frozen=True, slots=True, kw_only=True)
class BorrowGrant(Message):
    """BORROW_GRANT leader -> follower: `count` seats moved to it (0 = none found now).
    The seats themselves arrive with the DistributionSync and heartbeat allowance.
    `claim` echoes the ticket key of an honoured claim (sent once it is durable)."""

    license: License
    count: Seats
    detail: Line = ""
    claim: TicketText = ""  # echoes the honoured ticket (sent once it is durable)
    client_id: Sender = ""
    hold_for: Seconds = 0.0  # keep the claim's seats for `client_id` this long


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeNote:
    """Who made the admin change that produced config version (cfg_term, cfg_version) at
    RLF sequence `rlf_seq`, and why: carried by DISTRIBUTION_SYNC so that every server
    that applies the change records it with its author (the audit log, promise A1)."""

    cfg_term: Counter
    cfg_version: Counter
    rlf_seq: Counter
    op: Name
    actor: Line
    reason: Line = ""
    what: Line = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributionSync(Message):
    """DISTRIBUTION_SYNC (distribution criteria sync) leader -> follower: the whole
    distribution table at config version (cfg_term, cfg_version), plus the license codes
    added at run time. The follower persists it, then ACKs with that version."""

    cfg_term: Counter
    cfg_version: Counter
    rlf_seq: Counter
    licenses: tuple[LicenseDistribution, ...] = ()
    codes: tuple[CodeText, ...] = ()
    claims: tuple[ClaimRecord, ...] = ()
    drained: tuple[DrainedServer, ...] = ()
    changes: tuple[ChangeNote, ...] = ()  # the latest admin changes' authors (audit)


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainedServer:
    """A drained server and the config version its drain took effect in (see `drain`)."""

    id: Sender
    cfg_term: Counter
    cfg_version: Counter


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRecord:
    """An honoured fail-over claim: the ticket key ("server:serial"), the term it was
    minted in, and the seats of `license` it moved away from that server."""

    key: ClaimKey
    term: Counter
    license: License
    count: Seats


@dataclass(frozen=True, slots=True, kw_only=True)
class Adoption:
    """A claim credited to the follower that receives it: `count` seats of `license`
    (already in the heartbeat's allowance) are kept for client `client_id` for `hold`
    more seconds, the time its lease from the granting server may still run. The leader
    repeats it in every heartbeat to that follower until `hold` ends; the follower applies
    each `key` once."""

    key: ClaimKey
    client_id: Sender
    license: License
    count: Seats
    hold: Seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardedAdmin(Message):
    """A follower forwards an admin operation to the leader. `token` is the follower's
    connection token to answer on; `op` the admin message as received."""

    token: Token
    op: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardedReply(Message):
    """The leader's answer to a forwarded admin operation, relayed to `token`."""

    token: Token
    reply: AdminReply
