"""What the engine asks its runtime to do: the one door out of `LicenseServer`.

The runtime carries effects out **in list order**. A `PersistState` / `PersistKey` must be
durable before any later `Send` / `Reply` of the same list leaves the process (persist
before send: a vote, a term or a distribution acknowledged to a peer survives a crash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lm_core.engine.identity import ClientIdentity
from lm_core.engine.messages import Message


@dataclass(frozen=True, slots=True)
class Send:
    """Send `msg` to the pool member with server id `to`."""

    to: str
    msg: Message


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer on the client/admin connection `to` (the token the runtime passed as sender)."""

    to: str
    msg: Message


@dataclass(frozen=True, slots=True)
class PersistState:
    """Replace the server's small durable state (JSON-able)."""

    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PersistKey:
    """Upsert (entry) or delete (None) one key-table entry; may be group-committed."""

    client_id: str
    license: str
    entry: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class LogUsage:
    """One line of the usage log: kind is grant/release/deny/expire/reclaim/moved.
    `identity` is who holds (or asked for) the seats, when the server knows it. `ago`
    dates the line back: the event happened that many seconds before the effect (an
    expiry is found after the client's own lease ran out; the line says when it did)."""

    kind: str
    client_id: str
    license: str
    count: int
    reason: str = ""
    identity: ClientIdentity | None = None
    ago: float = 0.0


@dataclass(frozen=True, slots=True)
class Event:
    """One human log line (election, role, borrow, sync, push, deny, refused, ...)."""

    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


Effect = Send | Reply | PersistState | PersistKey | LogUsage | Event


@dataclass(frozen=True, slots=True)
class Persisted:
    """What the store hands back at start-up: the last PersistState and the key table."""

    state: dict[str, Any] | None
    keys: list[dict[str, Any]] = field(default_factory=list)
