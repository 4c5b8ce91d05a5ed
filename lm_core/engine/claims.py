"""Fail-over claims: the ticket a server hands its client, and the rules for honouring it.

Theory of operation
-------------------
Every authorization a server grants or renews carries a *ticket* (in `Authorize`):
which server granted it (``server``), the entry's serial number there (``serial``,
unique per server for ever: serials are allocated in persisted blocks), the seats
(``count``), and the *lease source* of the granting server when it last renewed the
entry: the term and heartbeat sequence number of the leader heartbeat that gave it its
lease (``term``, ``seq``; a leader names its own majority-acknowledged heartbeat). The
client id and the license are bound in by the MAC (an HMAC-SHA256 with the pool's claim
key, which only pool servers hold), so a client cannot forge a ticket, change its count,
or present another client's ticket.

A client whose server stopped answering presents its ticket in its fail-over heartbeat.
The server that adopts the client asks the leader to move exactly those seats from the
granting server to itself (FIG. 10: the new leader "will issue authorizations and
accept the allocations of old leader server A"). The leader honours a claim only if:

* the MAC verifies and the ticket names a pool member other than the adopter;
* the granting server can no longer grant: every lease this leader granted it has run
  out (a server of an older term holds none: all leases of older terms ended before
  this leader's election), and it is not fenced (then its seats moved already);
* the ticket is fresh: minted under this leader's own heartbeat ``seq`` (whose send
  time the leader remembers) and presented within the claim window after it, or minted
  in a term from the previous leader's term up to this leader's election, within the
  claim window after this leader's election (see `leases.Clocks.claim_window`);
* it was not used before: the ids of honoured tickets are part of the replicated
  distribution table and the adopter may grant only once that table version is durable
  on a majority, so a later leader knows them too (use-once across leader changes).

Nothing here reads a clock or a random generator; the MAC is a pure function.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

_VERSION = "t1"
TEST_CLAIM_KEY = b"lm-test-claim-key: for the simulator and tests only"
_MAC_BYTES = 16


class ClaimError(ValueError):
    """A ticket is malformed or its MAC does not verify (the text says which)."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """A granting server's proof that a client holds ``count`` seats of one license."""

    server: str
    serial: int
    count: int
    term: int  # lease source: the leader term ...
    seq: int  # ... and heartbeat sequence number under which the server last renewed

    @property
    def key(self) -> str:
        """The ticket's identity for use-once bookkeeping (stable across renewals)."""
        return f"{self.server}:{self.serial}"


def _mac(key: bytes, ticket: Ticket, client_id: str, license: str) -> str:
    body = "\x1f".join(
        (
            _VERSION,
            ticket.server,
            str(ticket.serial),
            str(ticket.count),
            str(ticket.term),
            str(ticket.seq),
            client_id,
            license,
        )
    )
    digest = hmac.new(key, body.encode("utf-8"), hashlib.sha256).digest()
    return digest[:_MAC_BYTES].hex()


def mint(key: bytes, ticket: Ticket, client_id: str, license: str) -> str:
    """The ticket's text, as carried in `Authorize.ticket` and `ClientHeartbeat.ticket`."""
    mac = _mac(key, ticket, client_id, license)
    return (
        f"{_VERSION}.{ticket.server}.{ticket.serial}.{ticket.count}."
        f"{ticket.term}.{ticket.seq}.{mac}"
    )


def read(key: bytes, text: str, client_id: str, license: str) -> Ticket:
    """Parse and verify a ticket presented by `client_id` for `license`.
    Raises `ClaimError` naming what is wrong."""
    parts = text.split(".")
    if len(parts) < 7 or parts[0] != _VERSION:
        raise ClaimError("not a ticket")
    mac = parts[-1]
    server = ".".join(parts[1:-5])
    numbers = parts[-5:-1]
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in numbers):
        raise ClaimError("malformed ticket")
    serial, count, term, seq = (int(p) for p in numbers)
    if not server or min(serial, count, term, seq) < 0 or count == 0:
        raise ClaimError("malformed ticket")
    ticket = Ticket(server=server, serial=serial, count=count, term=term, seq=seq)
    if not key or not hmac.compare_digest(mac, _mac(key, ticket, client_id, license)):
        raise ClaimError("ticket does not verify")
    return ticket
