"""The pool's shared words, defined once: why a server refuses (`DenyReason`), what it
notes in its event log (`EventKind`), what it writes to the usage log (`UsageKind`) and
which admin operations exist (`AdminOp`).

The engine, the client library, the CLI and the TUI import these; none of them spells the
words again. Each is a `StrEnum`, so a member *is* its string: it goes over the wire, into
JSON and into SQLite as the plain word, and compares equal to it. A test runs the patent's
example and the simulator and checks that every word the engine emits is listed here.
"""

from __future__ import annotations

import enum

from lm_core.engine import messages as m


class DenyReason(enum.StrEnum):
    """`Deny.reason`: a stable machine word (the human line is `Deny.detail`)."""

    NO_SEATS = "no_seats"  # no allocation free here, nor borrowable now
    NO_MAJORITY = "no_majority"  # majority rule: this server holds no lease from a majority leader
    RESTART_GRACE = "restart_grace"  # restarted less than one client lease ago (S4)
    UNKNOWN_LICENSE = "unknown_license"  # no such license in the RLF
    EXPIRED = "expired"  # every code of the license has expired
    DISASSOCIATED = "disassociated"  # this server is out of the pool
    RECLAIMED = "reclaimed"  # an operator reclaimed this authorization
    BAD_REQUEST = "bad_request"  # count out of range, wrong pool or similar
    # an operator drained this server for maintenance: the client walks on to the next
    # server (its seats follow it there with its ticket), as for a server that is down
    DRAINED = "drained"
    # this server cannot keep the client's seats: they moved with its fail-over claim, or
    # it restarted and has no room to re-adopt them; the client fails over at once,
    # presenting its ticket (its seats follow it, L2)
    FAIL_OVER = "fail_over"
    BINDING = "binding"  # a bound code's servers are not (a majority) in this pool (V1)
    # No server sends this one: the client library's word for a server it cannot reach,
    # handed to the client machine as a Deny so that it walks on to the next server.
    UNREACHABLE = "unreachable"


class EventKind(enum.StrEnum):
    """`Event.kind`: one line of a server's event log (status "events", the daemon's log)."""

    START = "start"  # the server started (or restarted)
    ROLE = "role"  # a role change: follower, candidate, leader, disassociated
    ELECTION = "election"  # the server stands for a term
    CHECK = "check"  # a follower heard no heartbeat and asks its leader (LEADER_CHECK)
    SYNC = "sync"  # a follower installed the leader's distribution table
    FENCE = "fence"  # the leader fenced a server that is out of contact
    BORROW = "borrow"  # allocations moved to a server through the leader
    CLAIM = "claim"  # a fail-over claim: seats follow their client (honoured/refused/durable)
    ADMIN = "admin"  # an admin change took effect (code added, distribution set, ...)
    PUSH = "push"  # a newer RLF was installed
    RECLAIM = "reclaim"  # an operator took an authorization back
    EXPIRY = "expiry"  # license codes expired: hard limits changed
    REFUSED = "refused"  # a message was ignored, and why
    ERROR = "error"  # persisted state could not be used and was ignored
    BUG = "bug"  # a step reported a bug (the engine raises instead; hosts fail on either)


class UsageKind(enum.StrEnum):
    """`LogUsage.kind`: one row of the usage log (`lm report`). Renewals are not logged."""

    GRANT = "grant"  # reason "failover" for a converted heartbeat, "re-adopted" after a restart
    RELEASE = "release"
    DENY = "deny"  # reason: the `DenyReason`
    EXPIRE = "expire"  # a key-table entry ran out without a release
    RECLAIM = "reclaim"  # reason: the operator's
    MOVED = "moved"  # the seats left with their client under a claim (reason: the ticket key)


class AdminOp(enum.StrEnum):
    """The admin operations, named after the patent's messages; the value is the
    operator-facing name (the `AdminClient` method, the TUI's outcome label)."""

    ADD_LICENSE_CODE = "add_code"
    ADD_ALLOCATIONS = "add_allocations"
    CHANGE_DISTRIBUTION = "set_distribution"
    UPDATE_RLF = "push_rlf"
    RECLAIM = "reclaim"
    DRAIN_SERVER = "drain_server"


ADMIN_MESSAGES: dict[AdminOp, type[m.Message]] = {
    AdminOp.ADD_LICENSE_CODE: m.AddLicenseCode,
    AdminOp.ADD_ALLOCATIONS: m.AddAllocations,
    AdminOp.CHANGE_DISTRIBUTION: m.ChangeDistribution,
    AdminOp.UPDATE_RLF: m.UpdateRlf,
    AdminOp.RECLAIM: m.Reclaim,
    AdminOp.DRAIN_SERVER: m.DrainServer,
}

# Every admin operation (a daemon takes them only from an admin certificate).
ADMIN_OPS: tuple[type[m.Message], ...] = tuple(ADMIN_MESSAGES.values())

# The admin operations that change the pool's configuration: a follower forwards them to
# the leader, and they are answered once a majority holds the new config version (S6).
# A reclaim is not one of them: it acts on the server it is sent to.
CONFIG_CHANGES: tuple[type[m.Message], ...] = tuple(
    msg for op, msg in ADMIN_MESSAGES.items() if op is not AdminOp.RECLAIM
)
