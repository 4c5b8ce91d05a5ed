"""The shapes of the two status documents, for mypy to check every reader's keys.

`ServerStatus` is what `LicenseServer.status(now)` returns (docs/CONTRACTS.md "Per-server
status"); `PoolStatus` is what `lm_core.runtime.poolstatus.merge_status` builds from them
(the `lm status --json` contract). Both are plain JSON objects on the wire and on disk:
these are `TypedDict`s, not classes, so nothing changes at run time. Keys are stable; a
key marked `NotRequired` may be missing (added by the runtime, or absent in older data).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# ---------------------------------------------------------------- per-server status


class Majority(TypedDict):
    up: int  # servers in contact (the leader's count; a follower's leader's)
    size: int  # servers in the RLF
    ok: bool  # this server serves under majority rule


class PeerStatus(TypedDict):
    up: bool
    last_heartbeat_age: float | None  # seconds since the last ACK (leader) / heartbeat
    fenced: NotRequired[bool]  # leader only: out of contact past the fencing time


class ServerRow(TypedDict):
    """One server's cells in the distribution table of one license."""

    distribution: int
    in_use: int
    available: int
    allowed: NotRequired[int | None]  # what that server may serve now (its allowance)
    # held back beside in_use: by its restart grace (S4), or seats of clients gone
    # without a word, kept until their tickets can no longer be claimed elsewhere (L2)
    grace_held: NotRequired[int]
    down: NotRequired[bool]  # leader's view: out of contact
    fenced: NotRequired[bool]  # leader's view: fenced (its seats may move)
    held_back: NotRequired[int]  # a down, unfenced server's seats that cannot move yet


class LicenseStatus(TypedDict):
    license: str  # "Application 1.0"
    hard_limit: int
    expires: str  # ISO date
    pool_available: int | None  # None on a follower ("don't care")
    free_pool: int | None  # None on a follower
    in_use: NotRequired[int | None]  # leader: seats in use pool-wide (None on a follower)
    held_back: NotRequired[int | None]  # leader: grace and down servers' held seats
    servers: dict[str, ServerRow | None]
    # V1, only for a license with a bound code: "bound" (its servers are here) or
    # "refused: <why>" (serves nothing here); absent: unbound
    binding: NotRequired[str]  # None: another server's row, seen by a follower


class ClientStatus(TypedDict):
    """One key-table entry."""

    client_id: str
    license: str
    count: int
    lease_expires_in: float
    last_heartbeat_age: float
    live: bool  # False: kept from before a restart, not yet heard from again
    # seconds since this server granted (or re-adopted) it: the checkout start
    held_for: NotRequired[float]
    # who holds it, as the client stated (`identity.ClientIdentity.as_json`); None: unknown
    identity: NotRequired[dict[str, Any] | None]


class EventStatus(TypedDict):
    age: float  # seconds ago
    kind: str  # an `EventKind`
    text: str


class ServerStatus(TypedDict):
    id: str
    pool: str
    role: str  # leader, follower, candidate, disassociated, starting
    term: int
    leader: str | None
    rlf_seq: int
    config_version: int
    config_term: int
    # Codes added at run time, on top of the RLF's (`lm rlf pull` writes them down); absent
    # from an older lm-daemon.
    codes: NotRequired[list[str]]
    drained: NotRequired[list[str]]  # servers drained for maintenance (the replicated table)
    serving: bool
    not_serving_reason: str | None  # "<DenyReason>: <why>"
    restart_grace: NotRequired[float]  # seconds left of its restart grace (S4), 0 if none
    majority: Majority
    peers: dict[str, PeerStatus]
    licenses: list[LicenseStatus]
    licenses_total: int  # how many there are (`licenses` lists at most STATUS_LICENSES_MAX)
    clients: list[ClientStatus]
    clients_total: int  # how many key-table rows there are (`clients`: STATUS_CLIENTS_MAX)
    events: list[EventStatus]


# ---------------------------------------------------------------- pool status


class PoolServer(TypedDict):
    """One server of the pool as the merged status shows it. The values from the server's
    own status (role, term, ...) are None when it could not be reached."""

    id: str
    address: str
    up: bool  # the leader's view (or `reachable` when there is no leader)
    reachable: bool
    role: str | None
    term: int | None
    rlf_seq: int | None
    config_version: int | None
    serving: bool | None
    not_serving_reason: str | None
    leader: str | None  # whom that server follows
    last_heartbeat_age: float | None
    clients_total: int | None  # key-table rows that server holds (None: unreachable)
    drained: NotRequired[bool]  # drained for maintenance (`lm server drain`)
    restart_grace: NotRequired[float | None]  # seconds left of its restart grace (S4)
    error: NotRequired[str | None]  # why it is unreachable (added by the admin client)
    tls_error: NotRequired[str | None]  # that failure named as a TLS one (runtime.tlsdiag)


class PoolRow(TypedDict, total=False):
    """A row of the merged table: a `ServerRow`, or `{}` when no leader answered."""

    distribution: int
    in_use: int
    available: int
    allowed: int | None
    grace_held: int
    down: bool
    fenced: bool
    held_back: int


class PoolLicense(TypedDict):
    license: str
    hard_limit: int | None
    expires: str | None
    pool_available: int | None
    free_pool: int | None
    servers: dict[str, PoolRow]  # the leader's global rows (`{}` without a leader)
    own: dict[str, PoolRow]  # each server's own row, as it reports it
    # V1, each server's own verdict: "unbound", "bound" or "refused: <why>"
    binding: NotRequired[dict[str, str]]


class PoolClient(TypedDict):
    client_id: str
    server: str
    license: str
    count: int
    lease_expires_in: float
    last_heartbeat_age: float | None
    held_for: NotRequired[float | None]
    since: NotRequired[str | None]  # checkout start, ISO 8601 UTC (collected_at - held_for)
    identity: NotRequired[dict[str, Any] | None]


class PoolEvent(TypedDict):
    server: str
    age: float
    kind: str  # an `EventKind`
    text: str


class PoolStatus(TypedDict):
    pool: str
    rlf_seq: int
    leader: str | None
    term: int
    collected_at: str  # ISO 8601, UTC
    majority: Majority
    servers: list[PoolServer]
    drained: NotRequired[list[str]]  # servers drained for maintenance, in RLF order
    licenses: list[PoolLicense]
    clients: list[PoolClient]
    clients_total: int  # key-table rows the reachable servers hold (`clients` may list fewer)
    events: list[PoolEvent]
    tls_error: NotRequired[str | None]  # the TLS failure every unreachable server shares
