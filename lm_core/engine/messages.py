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
    client converts the heartbeat to a request (FIG. 10)."""

    request_id: int
    license: str
    count: int = 1
    failover: bool = False


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
    or heartbeat, for `lease` seconds. `servers` is the leader priority list."""

    request_id: int
    license: str
    count: int
    lease: float
    heartbeat_interval: float
    servers: tuple[ServerAddress, ...] = ()


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
