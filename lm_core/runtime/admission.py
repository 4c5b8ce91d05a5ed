"""Who may send what to a daemon: a pure decision from the sender's certificate role and
the frame's kind, taken before the frame's body is read (and again, for server messages,
on the decoded sender).

Roles (the certificate's CN "<role>:<name>", see `tlsconfig`; documented in
docs/SECURITY.md):

=========  ==========================================================================
role       may send
=========  ==========================================================================
server     server <-> server messages, as the server its certificate names; client
           messages. Never admin operations nor status: a server's key cannot change
           the distribution through the admin door.
admin      status, the usage log and every admin operation (code add, allocations, distribution,
           RLF push, reclaim); client messages.
monitor    status and the usage log (reads only); client messages. Read-only
           operators, dashboards, `lm report`.
client     client messages (license requests, heartbeats, releases).
(none)     client messages: a license client need not present a certificate.
=========  ==========================================================================

Plaintext connections (loopback only, checked at start-up) carry no certificate; every
kind a daemon takes is accepted there, and a server message must name another server
of the RLF as its sender.

Verdicts: ACCEPT (read, decode, act), REFUSE (read and decode a small frame only to
answer it with a refusal; the operation is not carried out), CLOSE (do not read the
body; close the connection with the reason).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lm_core.engine import messages as m
from lm_core.runtime.kinds import KiB, Kind
from lm_core.runtime.tlsconfig import PeerIdentity

REFUSE_DECODE_MAX = 8 * KiB  # a refused admin frame larger than this is not read at all


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""


ACCEPT = Decision(Verdict.ACCEPT)

# kind -> roles that may send it to a daemon over TLS (None = no certificate)
MAY_SEND: dict[Kind, frozenset[str | None]] = {
    Kind.CLIENT: frozenset({None, "client", "admin", "monitor", "server"}),
    Kind.STATUS: frozenset({"admin", "monitor"}),
    Kind.ADMIN: frozenset({"admin"}),
    Kind.ADMIN_RLF: frozenset({"admin"}),
    Kind.SERVER: frozenset({"server"}),
    Kind.SERVER_BULK: frozenset({"server"}),
}
_ANSWERED = frozenset({Kind.STATUS, Kind.ADMIN, Kind.ADMIN_RLF})  # refused with a reply


def role_of(who: PeerIdentity | None, pool: str) -> str | None:
    """The role a connection speaks with: its certificate's role, or None without a
    certificate or with a certificate issued for another pool."""
    if who is None or (who.pool and who.pool != pool):
        return None
    return who.role


def describe(who: PeerIdentity | None) -> str:
    """How a log line names the certificate of a connection."""
    return "no certificate" if who is None else f"{who.role}:{who.name}"


def admit_frame(
    who: PeerIdentity | None, kind: Kind, size: int, *, tls: bool, pool: str
) -> Decision:
    """May a connection certified as `who` send a frame of `kind` and `size` bytes?"""
    if kind not in MAY_SEND:
        return Decision(Verdict.CLOSE, f"a daemon does not take {kind.name} frames")
    if not tls:
        return ACCEPT
    role = role_of(who, pool)
    if role in MAY_SEND[kind]:
        return ACCEPT
    if who is not None and who.pool and who.pool != pool:
        why = f"certificate of pool {who.pool!r}"
    elif kind in (Kind.SERVER, Kind.SERVER_BULK) and who is None:
        why = "missing certificate: server message without a server certificate (none presented)"
    elif kind in (Kind.SERVER, Kind.SERVER_BULK):
        why = f"server message without a server certificate ({describe(who)})"
    elif kind is Kind.STATUS:
        why = f"status needs an admin certificate or a monitor certificate ({describe(who)})"
    else:
        why = f"admin operations need an admin certificate ({describe(who)})"
    if kind in _ANSWERED and size <= REFUSE_DECODE_MAX:
        return Decision(Verdict.REFUSE, why)
    return Decision(Verdict.CLOSE, why)


def admit_server_sender(
    who: PeerIdentity | None,
    sender: str,
    msg_pool: str,
    *,
    tls: bool,
    pool: str,
    server_ids: tuple[str, ...] | list[str],
    own_id: str,
) -> Decision:
    """A decoded server message: is its sender the server this connection speaks for?"""
    if msg_pool != pool:
        return Decision(Verdict.CLOSE, f"server message for pool {msg_pool!r}")
    if tls and (who is None or who.name != sender):
        return Decision(
            Verdict.CLOSE, f"message from {sender!r} on a connection certified for {describe(who)}"
        )
    if sender not in server_ids or sender == own_id:
        return Decision(Verdict.CLOSE, f"message from unknown server {sender!r}")
    return ACCEPT


def reaches_nobody(msg: object, *, open: bool) -> bool:
    """A client message whose answer nobody can receive must not be carried out when it
    would take a seat: a Request (or a fail-over heartbeat, which becomes one) from a
    connection that is closed. A Release always goes through."""
    if open:
        return False
    return isinstance(msg, m.Request) or (isinstance(msg, m.ClientHeartbeat) and msg.failover)
